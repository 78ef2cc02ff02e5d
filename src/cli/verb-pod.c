/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod verbs, thin signed front ends of docs/api.md: create (POST /v1/pods), delete/cancel,
 * wait (polls GET /v1/pods/ID), upload (PUT workspace, the tar of `nucleus run`), patch (GET
 * workspace/patch), tool (POST tools/OP) and approve (POST approvals). Everything the node
 * answers is untrusted: messages are made printable, JSON is re-encoded by jansson.
 */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent-workspace.h"
#include "alloc-util.h"
#include "cli-pod.h"
#include "cli.h"
#include "client-paths.h"
#include "client-settings.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "parse-util.h"
#include "string-util.h"
#include "time-util.h"

#define SPEC_MAX_BYTES ((size_t) 2 * 1024 * 1024) /* the node's default max_body_bytes */
#define ARGS_MAX_BYTES ((size_t) 2 * 1024 * 1024)
#define TOKEN_MAX_BYTES ((size_t) 16 * 1024)

/* ---- shared ---- */

static int open_client(OutputMode mode, NucleusClient **ret) {
        _cleanup_free_ char *err = NULL;
        int r = client_open_default(ret, &err);
        if (r < 0)
                return cli_fail(mode, "not_configured", "%s", err ?: strerror(-r));
        return 0;
}

/* A failed call: "message (kind)" plus its fix on stderr; in JSON mode the node's own error
 * document when it sent one (it carries detail, operation, args_sha256...), else
 * {"ok": false, "error", "kind"}. Returns CLI_EXIT_FAILURE. */
static int fail_call(OutputMode mode, const ClientError *e, const ClientResponse *resp) {
        _cleanup_free_ char *d = client_error_describe(e);
        log_error("%s", d);
        if (mode != OUTPUT_JSON)
                return CLI_EXIT_FAILURE;
        _cleanup_json_ json_t *doc = NULL;
        if (resp && resp->body && resp->size > 0)
                doc = json_loadb(resp->body, resp->size, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_object(doc) && json_is_string(json_object_get(doc, "kind"))) {
                json_object_set_new(doc, "ok", json_false());
                (void) cli_print_json(doc);
        } else
                cli_print_json_failure(mode, e->kind ?: "internal", e->message ?: "");
        return CLI_EXIT_FAILURE;
}

/* A request with a raw body; a non-2xx answer is decoded into *e and returns -EREMOTEIO. */
static int
        call(NucleusClient *c,
             const char *method,
             const char *path,
             const char *content_type,
             const void *body,
             size_t n,
             ClientResponse *resp,
             ClientError *e) {
        int r = client_request(c, method, path, content_type, body, n, resp, e);
        if (r < 0)
                return r;
        if (resp->status < 200 || resp->status >= 300) {
                client_error_from_response(resp, e);
                return -EREMOTEIO;
        }
        return 0;
}

static json_t *parse_answer(const ClientResponse *resp) {
        if (!resp->body || resp->size == 0)
                return NULL;
        json_t *j = json_loadb(resp->body, resp->size, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static char *field(const json_t *o, const char *k) {
        json_t *v = json_object_get(o, k);
        if (json_is_string(v))
                return string_make_visible(json_string_value(v));
        if (json_is_integer(v))
                return xasprintf("%lld", (long long) json_integer_value(v));
        return NULL;
}

/* The single POD operand of a verb; usage error otherwise. */
static int pod_operand(int argc, char **argv, int want, const char **ret) {
        if (optind + want != argc)
                return cli_usage_error(
                        cli_verb(),
                        "expected %s",
                        want == 1 ? "exactly one POD id" : "POD and one more operand");
        if (!cli_pod_id_valid(argv[optind]))
                return cli_usage_error(
                        cli_verb(), "'%s' is not a pod id (letters, digits, '-' and '_')", argv[optind]);
        *ret = argv[optind];
        return 0;
}

/* Read a whole file (or stdin for "-"), capped. */
static int read_input(const char *path, size_t max, char **ret, size_t *ret_n) {
        if (streq(path, "-"))
                return read_full_fd(STDIN_FILENO, max, ret, ret_n);
        return read_full_file_at(AT_FDCWD, path, max, ret, ret_n);
}

static void print_pod_line(const json_t *pod) {
        _cleanup_free_ char *id = field(pod, "id"), *state = field(pod, "state"),
                            *reason = field(pod, "reason");
        printf("%s\n", id ?: "-");
        fflush(stdout);
        if (reason)
                log_info("pod %s: %s (%s)", id ?: "-", state ?: "-", reason);
        else
                log_info("pod %s: %s", id ?: "-", state ?: "-");
}

/* ---- create ---- */

static void create_usage(void) {
        printf("Usage: nucleus create -f SPEC [OPTIONS]\n\n"
               "Create a pod from a PodSpec (YAML or JSON, docs/podspec.md). Prints the pod id on\n"
               "stdout and its state on stderr.\n\n"
               "Options:\n"
               "  -f, --file SPEC         The PodSpec file ('-' reads stdin)\n"
               "      --wait              Wait until the pod is running (see 'nucleus wait')\n"
               "      --timeout S         With --wait: give up after S seconds (default 120)\n"
               "      --output FORMAT     text (default) or json (the pod object)\n"
               "  -h, --help              Show this help\n");
}

static int wait_state(
        NucleusClient *c, OutputMode mode, const char *pod, const char *want, usec_t timeout, json_t **ret);

int verb_create(int argc, char **argv) {
        enum {
                ARG_WAIT = 0x100,
                ARG_TIMEOUT,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "file", required_argument, NULL, 'f' },
                { "wait", no_argument, NULL, ARG_WAIT },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_free_ char *spec = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *file = NULL;
        bool wait = false;
        uint32_t timeout_s = 120;
        size_t n = 0;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hf:", options, NULL)) >= 0)
                switch (ch) {
                case 'f':
                        file = optarg;
                        break;
                case ARG_WAIT:
                        wait = true;
                        break;
                case ARG_TIMEOUT:
                        if (safe_atou32(optarg, &timeout_s) < 0 || timeout_s == 0)
                                return cli_usage_error(
                                        "create",
                                        "--timeout needs a positive number of seconds, not '%s'",
                                        optarg);
                        break;
                default:
                        r = cli_option_common(ch, create_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (!file)
                return cli_usage_error("create", "-f SPEC is required");
        if (optind < argc)
                return cli_usage_error("create", "unexpected argument '%s'", argv[optind]);

        r = read_input(file, SPEC_MAX_BYTES, &spec, &n);
        if (r == -EFBIG)
                return cli_fail(mode, "too_large", "%s: larger than %zu bytes", file, SPEC_MAX_BYTES);
        if (r < 0)
                return cli_fail(mode, "io_error", "cannot read %s: %s", file, strerror(-r));
        const char *p = spec + strspn(spec, " \t\r\n");
        const char *ct = *p == '{' ? "application/json" : "application/yaml";

        r = open_client(mode, &c);
        if (r != 0)
                return r;
        r = call(c, "POST", "/v1/pods", ct, spec, n, &resp, &e);
        if (r < 0)
                return fail_call(mode, &e, &resp);
        _cleanup_json_ json_t *pod = parse_answer(&resp);
        const char *id = json_string_value(json_object_get(pod, "id"));
        if (!id || !cli_pod_id_valid(id))
                return cli_fail(mode, "internal", "the node's answer carries no valid pod id");
        if (wait) {
                json_t *final = NULL;
                _cleanup_free_ char *idc = xstrdup(id);
                r = wait_state(c, mode, idc, "running", (usec_t) timeout_s * USEC_PER_SEC, &final);
                if (r != 0) {
                        json_decref(final);
                        return r;
                }
                json_decref(pod);
                pod = final;
        }
        if (mode == OUTPUT_JSON)
                return cli_print_json(pod) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        print_pod_line(pod);
        _cleanup_free_ char *warning = field(pod, "warning");
        if (warning)
                log_warning("%s", warning);
        return CLI_EXIT_OK;
}

/* ---- delete / cancel ---- */

static void delete_usage(void) {
        printf("Usage: nucleus delete POD [OPTIONS]\n"
               "       nucleus cancel POD [OPTIONS]\n\n"
               "Stop a pod and delete it (idempotent: a pod that already ended answers its final\n"
               "state). Its audit log and console log stay on the node.\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json (the pod object)\n"
               "  -h, --help              Show this help\n");
}

int verb_delete(int argc, char **argv) {
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        OutputMode mode = OUTPUT_TEXT;
        const char *pod;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                r = cli_option_common(ch, delete_usage, &mode);
                if (r != CLI_OPTION_CONTINUE)
                        return r;
        }
        r = pod_operand(argc, argv, 1, &pod);
        if (r != 0)
                return r;
        r = open_client(mode, &c);
        if (r != 0)
                return r;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        r = call(c, "DELETE", path, NULL, NULL, 0, &resp, &e);
        if (r < 0)
                return fail_call(mode, &e, &resp);
        _cleanup_json_ json_t *j = parse_answer(&resp);
        if (!j)
                return cli_fail(mode, "internal", "the node's answer is not a JSON object");
        if (mode == OUTPUT_JSON)
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        _cleanup_free_ char *state = field(j, "state");
        printf("%s %s\n", pod, state ?: "-");
        return CLI_EXIT_OK;
}

/* ---- wait ---- */

static const char *const pod_states[] = { "pending",  "booting", "configuring", "running",
                                          "stopping", "exited",  "failed",      NULL };

static bool state_final(const char *s) {
        return s && (streq(s, "exited") || streq(s, "failed"));
}

/* Poll until the pod is in state want (0, *ret = the pod object), ends in another state or
 * the timeout passes (a failure already reported; CLI_EXIT_FAILURE). */
static int wait_state(
        NucleusClient *c, OutputMode mode, const char *pod, const char *want, usec_t timeout, json_t **ret) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        _cleanup_free_ char *last = NULL;

        for (;;) {
                _cleanup_client_error_ ClientError e = {};
                _cleanup_json_ json_t *j = NULL;
                int r = client_call_json(c, "GET", path, NULL, &j, &e);
                if (r < 0)
                        return fail_call(mode, &e, NULL);
                const char *st = json_string_value(json_object_get(j, "state"));
                if (st && streq(st, want)) {
                        *ret = TAKE_PTR(j);
                        return 0;
                }
                if (state_final(st)) {
                        _cleanup_free_ char *vs = string_make_visible(st), *reason = field(j, "reason"),
                                            *kind = field(j, "reason_kind");
                        return cli_fail(
                                mode,
                                kind ?: "pod_not_running",
                                "pod %s ended (%s) before reaching %s: %s",
                                pod,
                                vs,
                                want,
                                reason ?: "no reason given");
                }
                if (st && (!last || !streq(last, st))) {
                        free(last);
                        last = string_make_visible(st);
                        log_debug("pod %s: %s", pod, last);
                }
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return cli_fail(
                                mode,
                                "time_violation",
                                "pod %s did not reach %s within %llu s (still %s)",
                                pod,
                                want,
                                (unsigned long long) (timeout / USEC_PER_SEC),
                                last ?: "unknown");
                (void) usleep(200 * 1000);
        }
}

static void wait_usage(void) {
        printf("Usage: nucleus wait POD [OPTIONS]\n\n"
               "Wait until a pod reaches a state. Fails when it ends in another state first.\n\n"
               "Options:\n"
               "      --state STATE       pending, booting, configuring, running (default),\n"
               "                          stopping, exited or failed\n"
               "      --timeout S         Give up after S seconds (default 120)\n"
               "      --output FORMAT     text (default) or json (the pod object)\n"
               "  -h, --help              Show this help\n");
}

int verb_wait(int argc, char **argv) {
        enum {
                ARG_STATE = 0x100,
                ARG_TIMEOUT,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "state", required_argument, NULL, ARG_STATE },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_json_ json_t *pod_obj = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *want = "running";
        uint32_t timeout_s = 120;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (ch) {
                case ARG_STATE:
                        if (!strv_contains((char **) pod_states, optarg))
                                return cli_usage_error("wait", "unknown state '%s'", optarg);
                        want = optarg;
                        break;
                case ARG_TIMEOUT:
                        if (safe_atou32(optarg, &timeout_s) < 0 || timeout_s == 0)
                                return cli_usage_error(
                                        "wait",
                                        "--timeout needs a positive number of seconds, not '%s'",
                                        optarg);
                        break;
                default:
                        r = cli_option_common(ch, wait_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        r = pod_operand(argc, argv, 1, &pod);
        if (r != 0)
                return r;
        r = open_client(mode, &c);
        if (r != 0)
                return r;
        r = wait_state(c, mode, pod, want, (usec_t) timeout_s * USEC_PER_SEC, &pod_obj);
        if (r != 0)
                return r;
        if (mode == OUTPUT_JSON)
                return cli_print_json(pod_obj) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        printf("%s %s\n", pod, want);
        return CLI_EXIT_OK;
}

/* ---- upload ---- */

static void upload_usage(void) {
        printf("Usage: nucleus upload POD [OPTIONS]\n\n"
               "Upload a directory as the pod's /workspace (a tar, like 'nucleus run': in a git work\n"
               "tree the tracked and untracked-but-not-ignored files, else every file; never the\n"
               "Nucleus config dir or secret store).\n\n"
               "Options:\n"
               "  -d, --dir DIR           The directory (default: the current one)\n"
               "      --output FORMAT     text (default) or json (the node's import answer)\n"
               "  -h, --help              Show this help\n");
}

/* The config dir and secret store (canonical), never uploaded; refuses a dir inside them. */
static int upload_excludes(const char *dir, char ***ret, char **reterr) {
        _cleanup_strv_free_ char **exclude = NULL;
        _cleanup_free_ char *cfg = NULL, *sec = NULL;
        char real[PATH_MAX];

        if (client_config_dir(&cfg) >= 0)
                strv_extend(&exclude, realpath(cfg, real) ? real : cfg);
        if (client_secrets_dir(&sec) >= 0)
                strv_extend(&exclude, realpath(sec, real) ? real : sec);
        STRV_FOREACH(e, exclude) {
                const char *rest = startswith(dir, *e);
                if (rest && (*rest == 0 || *rest == '/')) {
                        *reterr = xasprintf(
                                "refusing to upload %s: it is inside the Nucleus config/secret store %s",
                                dir,
                                *e);
                        return -EPERM;
                }
        }
        *ret = TAKE_PTR(exclude);
        return 0;
}

int verb_upload(int argc, char **argv) {
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "dir", required_argument, NULL, 'd' },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_(agent_tar_done) AgentTar tar = {};
        _cleanup_strv_free_ char **exclude = NULL;
        _cleanup_free_ char *err = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *dir_arg = ".";
        char dir[PATH_MAX];
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hd:", options, NULL)) >= 0)
                switch (ch) {
                case 'd':
                        dir_arg = optarg;
                        break;
                default:
                        r = cli_option_common(ch, upload_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        r = pod_operand(argc, argv, 1, &pod);
        if (r != 0)
                return r;
        if (!realpath(dir_arg, dir))
                return cli_fail(mode, "io_error", "cannot use directory %s: %m", dir_arg);
        r = upload_excludes(dir, &exclude, &err);
        if (r < 0)
                return cli_fail(mode, "invalid_request", "%s", err);
        r = open_client(mode, &c);
        if (r != 0)
                return r;
        r = agent_workspace_tar(dir, exclude, &tar, &err);
        if (r == -E2BIG)
                return cli_fail(
                        mode, "too_large", "%s: %s", dir, err ?: "over the workspace size or file limit");
        if (r < 0)
                return cli_fail(mode, "io_error", "cannot pack %s: %s", dir, err ?: strerror(-r));
        if (tar.n_excluded > 0)
                log_warning(
                        "left out %zu file(s) of the Nucleus config/secret store inside %s",
                        tar.n_excluded,
                        dir);
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/workspace", pod);
        r = call(c, "PUT", path, "application/x-tar", tar.data, tar.size, &resp, &e);
        if (r < 0)
                return fail_call(mode, &e, &resp);
        _cleanup_json_ json_t *j = parse_answer(&resp);
        if (!j)
                return cli_fail(mode, "internal", "the node's answer is not a JSON object");
        if (mode == OUTPUT_JSON)
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        printf("uploaded %zu files%s (%zu KiB) to pod %s\n",
               tar.n_files,
               tar.from_git ? " (git ls-files)" : "",
               tar.size / 1024,
               pod);
        return CLI_EXIT_OK;
}

/* ---- patch ---- */

static void patch_usage(void) {
        printf("Usage: nucleus patch POD [OPTIONS]\n\n"
               "Fetch the pod's workspace changes as a binary git patch (apply with 'git apply').\n"
               "Changes a host would run, load or obey (build files, CI, editor and agent config,\n"
               "hooks, symlinks, executables, binaries) are FLAGGED on stderr with the reason:\n"
               "review them before applying.\n\n"
               "Options:\n"
               "  -o, --out FILE          Save the patch to FILE (0600) instead of printing it\n"
               "  -d, --dir DIR           The tree it will be applied to: also flag paths that\n"
               "                          symlinks already in DIR make reachable as flagged ones\n"
               "      --output FORMAT     text (default) or json (the node's export answer)\n"
               "  -h, --help              Show this help\n");
}

int verb_patch(int argc, char **argv) {
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "out", required_argument, NULL, 'o' },
                { "dir", required_argument, NULL, 'd' },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_(agent_patch_done) AgentPatch patch = {};
        _cleanup_free_ char *err = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *out = NULL, *dir = NULL;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "ho:d:", options, NULL)) >= 0)
                switch (ch) {
                case 'o':
                        out = optarg;
                        break;
                case 'd':
                        dir = optarg;
                        break;
                default:
                        r = cli_option_common(ch, patch_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        r = pod_operand(argc, argv, 1, &pod);
        if (r != 0)
                return r;
        r = open_client(mode, &c);
        if (r != 0)
                return r;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/workspace/patch", pod);
        r = call(c, "GET", path, NULL, NULL, 0, &resp, &e);
        if (r < 0)
                return fail_call(mode, &e, &resp);
        r = agent_patch_parse(resp.content_type, resp.body, resp.size, &patch, &err);
        if (r < 0)
                return cli_fail(
                        mode, "internal", "the node's patch answer is malformed: %s", err ?: strerror(-r));
        if (out) {
                r = write_file_atomic_at(AT_FDCWD, out, patch.patch ?: "", patch.size, 0600);
                if (r < 0)
                        return cli_fail(mode, "io_error", "cannot save the patch to %s: %s", out, strerror(-r));
        }
        size_t n_changed = strv_length(patch.changed);
        if (dir)
                agent_patch_flag_host(&patch, dir);
        agent_patch_print_flags(&patch, "FLAGGED: ");
        if (mode == OUTPUT_JSON) {
                _cleanup_json_ json_t *j = parse_answer(&resp);
                if (!j) /* a raw patch answer */
                        j = json_pack("{s:s%}", "patch", patch.patch ?: "", patch.size);
                if (out)
                        json_object_set_new(j, "path", json_string(out));
                /* The CLI's own flags: the node's list plus what this side computed. */
                json_object_set(j, "flagged", patch.flags);
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        }
        if (out) {
                printf("%s\n", out);
                log_info("%zu changed path(s), %zu bytes of patch saved to %s", n_changed, patch.size, out);
        } else if (patch.size > 0) {
                /* Raw for pipes ('| git apply'); on a terminal the guest's bytes are defused. */
                if (isatty(STDOUT_FILENO)) {
                        _cleanup_free_ char *vis = escape_text(patch.patch, patch.size, ESCAPE_KEEP_NEWLINE);
                        fputs(vis, stdout);
                } else if (fwrite(patch.patch, 1, patch.size, stdout) != patch.size)
                        return cli_fail(mode, "io_error", "cannot write the patch to stdout");
        } else
                log_info("no changes");
        return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

/* ---- tool ---- */

static void tool_usage(void) {
        printf("Usage: nucleus tool POD OPERATION [JSON-ARGS] [OPTIONS]\n\n"
               "Call one tool of the pod's proxy (read, write, edit, list, glob, grep, run, status,\n"
               "web_fetch, ...; docs/proxy.md) and print its JSON answer on stdout. JSON-ARGS is a\n"
               "JSON object ('-' reads it from stdin). Exit 0 only when the call was allowed and\n"
               "executed (a command's own exit status is in the answer); a denial prints\n"
               "'denied: KIND: message' on stderr and exits 1.\n\n"
               "Options:\n"
               "      --arg KEY=VALUE     Set argument KEY to the string VALUE (repeatable)\n"
               "      --arg-json KEY=JSON Set argument KEY to a JSON value, e.g. argv='[\"ls\"]'\n"
               "      --output FORMAT     text (default) or json (exactly the answer, or the error)\n"
               "  -h, --help              Show this help\n\n"
               "Example: nucleus tool POD run --arg-json argv='[\"git\",\"status\"]'\n");
}

static bool operation_valid(const char *op) {
        size_t n = strlen(op);
        return n >= 1 && n <= 32 && strspn(op, "abcdefghijklmnopqrstuvwxyz_") == n;
}

/* KEY=VALUE into args; value a string or (as_json) a JSON value. Returns 0 or an exit code. */
static int add_arg(json_t *args, const char *kv, bool as_json) {
        const char *eq = strchr(kv, '=');
        const char *opt = as_json ? "--arg-json" : "--arg";
        if (!eq || eq == kv)
                return cli_usage_error("tool", "%s needs KEY=VALUE, not '%s'", opt, kv);
        _cleanup_free_ char *key = xstrndup(kv, (size_t) (eq - kv));
        if (json_object_get(args, key))
                return cli_usage_error("tool", "argument '%s' given twice", key);
        json_t *v;
        if (as_json) {
                json_error_t je;
                v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
                if (!v)
                        return cli_usage_error("tool", "%s %s: not JSON: %s", opt, key, je.text);
        } else
                v = json_string(eq + 1);
        if (!v)
                return cli_usage_error("tool", "%s %s: not valid UTF-8", opt, key);
        json_object_set_new(args, key, v);
        return 0;
}

int verb_tool(int argc, char **argv) {
        enum {
                ARG_ARG = 0x100,
                ARG_ARG_JSON,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "arg", required_argument, NULL, ARG_ARG },
                { "arg-json", required_argument, NULL, ARG_ARG_JSON },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_json_ json_t *args = json_object(), *extra = json_object();
        OutputMode mode = OUTPUT_TEXT;
        const char *pod;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (ch) {
                case ARG_ARG:
                case ARG_ARG_JSON:
                        r = add_arg(extra, optarg, ch == ARG_ARG_JSON);
                        if (r != 0)
                                return r;
                        break;
                default:
                        r = cli_option_common(ch, tool_usage, &mode);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (argc - optind < 2 || argc - optind > 3)
                return cli_usage_error("tool", "expected POD OPERATION [JSON-ARGS]");
        r = pod_operand(argc, argv, argc - optind, &pod);
        if (r != 0)
                return r;
        const char *op = argv[optind + 1];
        if (!operation_valid(op))
                return cli_usage_error("tool", "'%s' is not an operation name ([a-z_], at most 32)", op);
        if (argc - optind == 3) {
                const char *a = argv[optind + 2];
                _cleanup_free_ char *buf = NULL;
                size_t n;
                if (streq(a, "-")) {
                        r = read_full_fd(STDIN_FILENO, ARGS_MAX_BYTES, &buf, &n);
                        if (r < 0)
                                return cli_fail(
                                        mode,
                                        r == -EFBIG ? "too_large" : "io_error",
                                        "cannot read the arguments from stdin: %s",
                                        strerror(-r));
                        a = buf;
                } else
                        n = strlen(a);
                json_error_t je;
                json_decref(args);
                args = json_loadb(a, n, JSON_REJECT_DUPLICATES, &je);
                if (!json_is_object(args))
                        return cli_usage_error(
                                "tool",
                                "JSON-ARGS must be a JSON object%s%s",
                                args ? "" : ": ",
                                args ? "" : je.text);
        }
        const char *k;
        json_t *v;
        json_object_foreach(extra, k, v) {
                if (json_object_get(args, k))
                        return cli_usage_error(
                                "tool", "argument '%s' given both in JSON-ARGS and as an option", k);
                json_object_set(args, k, v);
        }

        _cleanup_free_ char *body = json_dumps(args, JSON_COMPACT);
        if (!body)
                return cli_fail(mode, "internal", "cannot encode the arguments");
        r = open_client(mode, &c);
        if (r != 0)
                return r;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/tools/%s", pod, op);
        r = client_request(c, "POST", path, "application/json", body, strlen(body), &resp, &e);
        if (r < 0)
                return fail_call(mode, &e, NULL);
        if (resp.status < 200 || resp.status >= 300) {
                client_error_from_response(&resp, &e);
                /* Policy refusals (403), budget (402) and the time window (408) are denials;
                 * anything else (unknown pod, pod not running, bad arguments) an error. */
                if (resp.status == 402 || resp.status == 403 || resp.status == 408)
                        fprintf(stderr, "denied: %s: %s\n", e.kind ?: "internal", e.message ?: "");
                else {
                        _cleanup_free_ char *d = client_error_describe(&e);
                        log_error("%s", d);
                }
                if (mode == OUTPUT_JSON) {
                        _cleanup_json_ json_t *doc = parse_answer(&resp);
                        if (doc && json_is_string(json_object_get(doc, "kind"))) {
                                json_object_set_new(doc, "ok", json_false());
                                (void) cli_print_json(doc);
                        } else
                                cli_print_json_failure(mode, e.kind ?: "internal", e.message ?: "");
                }
                return CLI_EXIT_FAILURE;
        }
        _cleanup_json_ json_t *ans = parse_answer(&resp);
        if (!ans)
                return cli_fail(mode, "internal", "the node's answer is not a JSON object");
        if (cli_print_json(ans) < 0)
                return CLI_EXIT_FAILURE;
        if (mode == OUTPUT_TEXT && streq(op, "run")) {
                json_t *ec = json_object_get(ans, "exit_code");
                if (json_is_integer(ec) && json_integer_value(ec) != 0)
                        log_info(
                                "the command ran and exited with status %lld",
                                (long long) json_integer_value(ec));
        }
        return CLI_EXIT_OK;
}

/* ---- approve ---- */

static void approve_usage(void) {
        printf("Usage: nucleus approve POD TOKEN|- [OPTIONS]\n\n"
               "Hand an approval token (docs/approvals.md) to the pod; a later matching call uses\n"
               "it. '-' reads the token from stdin (keeps it out of the process list and history).\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json (the proxy's approve answer)\n"
               "  -h, --help              Show this help\n");
}

int verb_approve(int argc, char **argv) {
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        _cleanup_free_ char *buf = NULL;
        OutputMode mode = OUTPUT_TEXT;
        const char *pod, *token;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                r = cli_option_common(ch, approve_usage, &mode);
                if (r != CLI_OPTION_CONTINUE)
                        return r;
        }
        r = pod_operand(argc, argv, 2, &pod);
        if (r != 0)
                return r;
        token = argv[optind + 1];
        if (streq(token, "-")) {
                size_t n;
                r = read_full_fd(STDIN_FILENO, TOKEN_MAX_BYTES, &buf, &n);
                if (r < 0)
                        return cli_fail(mode, "io_error", "cannot read the token from stdin: %s", strerror(-r));
                buf[strcspn(buf, " \t\r\n")] = 0;
                token = buf;
        }
        if (isempty(token) || strlen(token) > TOKEN_MAX_BYTES)
                return cli_usage_error("approve", "the token is empty or too long");
        r = open_client(mode, &c);
        if (r != 0)
                return r;
        _cleanup_json_ json_t *req = json_pack("{s:s}", "token", token);
        if (!req)
                return cli_usage_error("approve", "the token is not valid UTF-8");
        _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/approvals", pod);
        r = call(c, "POST", path, "application/json", body, strlen(body), &resp, &e);
        if (r < 0)
                return fail_call(mode, &e, &resp);
        _cleanup_json_ json_t *j = parse_answer(&resp);
        if (!j)
                return cli_fail(mode, "internal", "the node's answer is not a JSON object");
        if (mode == OUTPUT_JSON)
                return cli_print_json(j) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        _cleanup_free_ char *op = field(j, "operation"), *uses = field(j, "uses");
        printf("approved %s for pod %s (%s use%s)\n",
               op ?: "-",
               pod,
               uses ?: "?",
               uses && streq(uses, "1") ? "" : "s");
        return CLI_EXIT_OK;
}
