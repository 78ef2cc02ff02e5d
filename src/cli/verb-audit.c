/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus audit verify FILE|POD: verify a hash-chained, signed audit log with src/lib/audit's
 * verifier and the audit public key (secrets dir, or --public-key FILE). A POD (id, unique id
 * prefix or name) fetches the log from the node first (signed GET /v1/pods/ID/audit); a live
 * pod's log may be unsealed.
 * nucleus audit show FILE|POD: the same log as a transcript, one line per record (time, actor,
 * operation, decision, and the arguments the record shows: argv, paths, URL), after verifying
 * it. Records are untrusted text: every value is printed through the one escaping function.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "audit.h"
#include "cli-files.h"
#include "cli-pod.h"
#include "cli.h"
#include "client-paths.h"
#include "client-settings.h"
#include "escape.h"
#include "fd-util.h"
#include "json-util.h"
#include "secrets.h"
#include "string-util.h"
#include "words.h"

static void usage(void) {
        printf("Usage: nucleus audit verify FILE|POD [OPTIONS]\n"
               "       nucleus audit show FILE|POD [OPTIONS]\n\n"
               "verify: check an audit log: syntax, order, hash chain, signatures and seal.\n"
               "show: print it as a transcript (time, actor, operation, decision, arguments), after\n"
               "checking it (a log that does not verify is shown with a warning on stderr).\n"
               "A path (containing '/' or naming an existing file) is read locally; otherwise the\n"
               "argument is a pod (id, unique id prefix or name) and the log comes from the node.\n\n"
               "Options:\n"
               "      --public-key FILE   Audit public key (default: <secrets dir>/audit.pub)\n"
               "      --allow-unsealed    Accept a log without a seal (a pod still running)\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

/* The log the node keeps for pod on this machine. NULL when unknown or not readable. */
#define AUDIT_SHOW_MAX ((size_t) 256 * 1024 * 1024) /* the node's own cap on a pod's log */

static char *local_audit_log(const char *pod) {
        _cleanup_free_ char *dir = cli_local_pod_dir(pod);
        if (!dir)
                return NULL;
        char *p = xasprintf("%s/audit.jsonl", dir);
        if (access(p, R_OK) < 0)
                return mfree(p);
        return p;
}

/* The text a record shows of its operation's arguments (its "detail", docs/audit.md), one
 * line, escaped. Caller frees; "" when it shows none. */
static char *detail_text(json_t *detail) {
        _cleanup_free_ char *out = xstrdup("");
        const char *k;
        json_t *v;

        if (!json_is_object(detail))
                return TAKE_PTR(out);
        /* The keys docs/audit.md defines in reading order, then any others. */
        static const char *const order[] = { "argv",    "argv_more", "method", "url", "operation", "uses",
                                             "pattern", "path",      "bytes",  "cwd", "env",       NULL };
        _cleanup_strv_free_ char **keys = NULL;
        for (size_t i = 0; order[i]; i++)
                if (json_object_get(detail, order[i]))
                        strv_extend(&keys, order[i]);
        json_object_foreach(detail, k, v)
                if (!strv_contains(keys, k))
                        strv_extend(&keys, k);

        STRV_FOREACH(kp, keys) {
                k = *kp;
                v = json_object_get(detail, k);
                _cleanup_free_ char *part = NULL;
                if (streq(k, "argv") && json_is_array(v)) {
                        _cleanup_strv_free_ char **words = NULL;
                        size_t i;
                        json_t *w;
                        json_array_foreach(v, i, w)
                                strv_extend(&words, json_string_value(w) ?: "?");
                        part = words ? words_join(words) : xstrdup("");
                } else if (streq(k, "argv_more"))
                        part = xasprintf("... (+%lld arguments)", (long long) json_integer_value(v));
                else if (streq(k, "path") || streq(k, "url") || streq(k, "operation"))
                        part = xstrdup(json_string_value(v) ?: "");
                else if (streq(k, "bytes"))
                        part = xasprintf("(%lld bytes)", (long long) json_integer_value(v));
                else if (streq(k, "env") && json_is_array(v)) {
                        _cleanup_strv_free_ char **names = NULL;
                        size_t i;
                        json_t *w;
                        json_array_foreach(v, i, w)
                                strv_extend(&names, json_string_value(w) ?: "?");
                        _cleanup_free_ char *l = strv_join(names, ",");
                        part = xasprintf("env=%s", l ?: "");
                } else if (json_is_string(v))
                        part = xasprintf("%s=%s", k, json_string_value(v));
                else {
                        _cleanup_free_ char *j = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                        part = xasprintf("%s=%s", k, j ?: "?");
                }
                char *next = xasprintf("%s%s%s", out, *out ? " " : "", part);
                free(out);
                out = next;
        }
        return string_make_visible(out);
}

/* Prints one record as a transcript line: TIME ACTOR OP DECISION[/KIND] DETAIL. */
static void show_record(json_t *rec, bool *printed_date) {
        const char *time_s = json_string_value(json_object_get(rec, "time")) ?: "";
        _cleanup_free_ char *when = string_make_visible(strlen(time_s) > 11 ? time_s + 11 : time_s),
                            *actor = string_make_visible(
                                    json_string_value(json_object_get(rec, "actor")) ?: "?"),
                            *op = string_make_visible(json_string_value(json_object_get(rec, "op")) ?: "?"),
                            *decision = string_make_visible(
                                    json_string_value(json_object_get(rec, "decision")) ?: "?"),
                            *kind = json_is_string(json_object_get(rec, "kind"))
                ? string_make_visible(json_string_value(json_object_get(rec, "kind")))
                : NULL,
                            *detail = detail_text(json_object_get(rec, "detail"));
        if (!*printed_date && strlen(time_s) >= 10) {
                _cleanup_free_ char *date = xstrndup(time_s, 10), *vis = string_make_visible(date);
                printf("# %s (times UTC)\n", vis);
                *printed_date = true;
        }
        _cleanup_free_ char *outcome = kind ? xasprintf("%s/%s", decision, kind) : xstrdup(decision);
        printf("%-13s %-14s %-18s %-24s %s\n", when, actor, op, outcome, detail);
}

/* Fetches the log: a file, or a pod's log from the node (or the copy the node left on this
 * machine when it forgot the pod). Returns 0 with the bytes, or an exit code (> 0) after
 * saying why. */
static int load_log(const char *target, OutputMode output, char **ret_data, size_t *ret_size, char **ret_name) {
        _cleanup_free_ char *err = NULL, *pod = NULL;
        struct stat st;
        int r;

        if (strchr(target, '/') || stat(target, &st) == 0) {
                r = read_full_file_at(AT_FDCWD, target, AUDIT_SHOW_MAX, ret_data, ret_size);
                if (r < 0)
                        return cli_fail(output, "io_error", "cannot read %s: %s", target, strerror(-r));
                *ret_name = xstrdup(target);
                return 0;
        }
        if (!cli_pod_id_valid(target))
                return cli_usage_error("audit", "'%s' is neither a file nor a pod", target);

        _cleanup_client_free_ NucleusClient *cl = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_(client_response_done) ClientResponse resp = {};
        r = client_open_default(&cl, &err);
        if (r < 0)
                return cli_fail(output, "io_error", "%s", err ?: strerror(-r));
        r = cli_pod_resolve(cl, NULL, target, &pod, &err);
        if (r < 0)
                return cli_fail(output, r == -EEXIST ? "ambiguous" : "io_error", "%s", err);
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/audit", pod);
        r = client_request(cl, "GET", path, NULL, NULL, 0, &resp, &e);
        if (r >= 0 && (resp.status < 200 || resp.status >= 300)) {
                client_error_from_response(&resp, &e);
                r = -EREMOTEIO;
        }
        _cleanup_free_ char *local = NULL;
        if (r < 0 && e.status == 404 && (local = local_audit_log(pod))) {
                /* A node forgets the pods of its earlier runs; their logs stay on disk. */
                fprintf(stderr,
                        "nucleus audit: the node does not know pod %s (restarted since?); "
                        "reading the log it left at %s\n",
                        pod,
                        local);
                r = read_full_file_at(AT_FDCWD, local, AUDIT_SHOW_MAX, ret_data, ret_size);
                if (r < 0)
                        return cli_fail(output, "io_error", "cannot read %s: %s", local, strerror(-r));
                *ret_name = xstrdup(pod);
                return 0;
        }
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                return cli_fail(output, e.kind ?: "io_error", "fetching the log of pod %s: %s", pod, d);
        }
        *ret_data = TAKE_PTR(resp.body);
        *ret_size = resp.size;
        *ret_name = TAKE_PTR(pod);
        return 0;
}

/* audit show: the transcript after the verdict. Exit 0 when the log verifies (unsealed is
 * fine: a live pod), 1 when it does not (the records are still shown, marked untrusted). */
static int show(const char *name, const char *data, size_t size, const AuditVerifyReport *rep, OutputMode output) {
        _cleanup_json_ json_t *records = json_array();
        _cleanup_json_ json_t *answered = json_object();
        size_t off = 0;

        while (off < size) {
                const char *nl = memchr(data + off, '\n', size - off);
                size_t len = nl ? (size_t) (nl - (data + off)) : size - off;
                json_t *rec = json_loadb(data + off, len, JSON_REJECT_DUPLICATES, NULL);
                if (json_is_object(rec)) {
                        json_array_append_new(records, rec);
                        json_t *rs = json_object_get(rec, "request_seq");
                        if (json_is_integer(rs)) {
                                _cleanup_free_ char *key = xasprintf(
                                        "%lld", (long long) json_integer_value(rs));
                                json_object_set_new(answered, key, json_true());
                        }
                } else
                        json_decref(rec);
                off += len + 1;
        }
        _cleanup_free_ char *reason = rep->reason ? string_make_visible(rep->reason) : NULL;
        if (!rep->valid)
                fprintf(stderr,
                        "nucleus audit: WARNING: %s does not verify (line %u: %s); the records below are "
                        "not trustworthy\n",
                        name,
                        rep->bad_line,
                        reason ?: "unknown reason");
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack(
                        "{s:s?, s:b, s:b, s:O}",
                        "pod",
                        rep->pod,
                        "valid",
                        rep->valid,
                        "sealed",
                        rep->sealed,
                        "records",
                        records);
                (void) cli_print_json(doc);
                return rep->valid ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
        }
        _cleanup_free_ char *podv = string_make_visible(rep->pod ?: name);
        printf("# pod %s: %llu records, %s%s\n",
               podv,
               (unsigned long long) rep->records,
               rep->valid ? "valid" : "INVALID",
               rep->sealed ? ", sealed" : ", not sealed (still running, or cut short)");
        bool printed_date = false;
        size_t i;
        json_t *rec;
        json_array_foreach(records, i, rec) {
                const char *decision = json_string_value(json_object_get(rec, "decision"));
                /* A call's request record is shown only when no result followed it (the node
                 * stopped mid-call): otherwise its result line says everything. */
                if (streq_ptr(decision, "request")) {
                        _cleanup_free_ char *key = xasprintf(
                                "%lld", (long long) json_integer_value(json_object_get(rec, "seq")));
                        if (json_object_get(answered, key))
                                continue;
                }
                show_record(rec, &printed_date);
        }
        return rep->valid ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

int verb_audit(int argc, char **argv) {
        enum {
                ARG_KEY = 0x100,
                ARG_UNSEALED
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                { "public-key", required_argument, NULL, ARG_KEY },
                { "allow-unsealed", no_argument, NULL, ARG_UNSEALED },
                CLI_OPTION_OUTPUT,
                {},
        };
        _cleanup_free_ char *keyfile = NULL, *err = NULL, *data = NULL, *name = NULL;
        _cleanup_(audit_verify_report_done) AuditVerifyReport rep = {};
        OutputMode output = OUTPUT_TEXT;
        unsigned flags = 0;
        uint8_t pub[32];
        size_t size = 0;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_KEY:
                        free(keyfile);
                        keyfile = xstrdup(optarg);
                        break;
                case ARG_UNSEALED:
                        flags |= AUDIT_VERIFY_ALLOW_UNSEALED;
                        break;
                default:
                        r = cli_option_common(c, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (optind + 2 != argc || !(streq(argv[optind], "verify") || streq(argv[optind], "show")))
                return cli_usage_error("audit", "expected: nucleus audit verify|show FILE|POD");
        bool showing = streq(argv[optind], "show");
        const char *target = argv[optind + 1];
        if (showing)
                flags |= AUDIT_VERIFY_ALLOW_UNSEALED; /* a live pod's transcript so far */
        struct stat st;
        if (!strchr(target, '/') && stat(target, &st) < 0 && !cli_pod_id_valid(target))
                return cli_usage_error("audit", "'%s' is neither a file nor a pod", target);

        if (!keyfile && client_secret_file("audit.pub", &keyfile) < 0)
                return cli_fail(
                        output, "not_configured", "cannot locate the secrets directory; use --public-key FILE");
        r = secret_load_file(keyfile, pub, sizeof(pub), /* strict_perms= */ false, &err);
        if (r < 0)
                return cli_fail(output, "not_configured", "audit public key: %s", err ?: strerror(-r));

        r = load_log(target, output, &data, &size, &name);
        if (r > 0)
                return r;
        r = audit_verify_buffer(data, size, pub, flags, &rep);
        if (r < 0)
                return cli_fail(output, "io_error", "cannot check %s: %s", target, strerror(-r));
        if (showing)
                return show(name, data, size, &rep, output);

        _cleanup_free_ char *reason = rep.reason ? string_make_visible(rep.reason) : NULL;
        if (output == OUTPUT_JSON) {
                _cleanup_json_ json_t *doc = json_pack(
                        "{s:b,s:I,s:b,s:s?,s:I,s:I,s:s?}",
                        "valid",
                        rep.valid,
                        "records",
                        (json_int_t) rep.records,
                        "sealed",
                        rep.sealed,
                        "pod",
                        rep.pod,
                        "bad_seq",
                        (json_int_t) rep.bad_seq,
                        "bad_line",
                        (json_int_t) rep.bad_line,
                        "reason",
                        reason);
                json_object_set_new(doc, "repaired", json_boolean(rep.valid && rep.repairs > 0));
                (void) cli_print_json(doc);
        } else if (rep.valid && rep.repairs > 0)
                printf("%s: repaired (%llu records%s%s%s; %llu signed repair record(s): %llu bytes of "
                       "torn final lines were cut)\n",
                       target,
                       (unsigned long long) rep.records,
                       rep.sealed ? ", sealed" : ", not sealed",
                       rep.pod ? ", pod " : "",
                       rep.pod ?: "",
                       (unsigned long long) rep.repairs,
                       (unsigned long long) rep.cut_bytes);
        else if (rep.valid)
                printf("%s: valid (%llu records%s%s%s)\n",
                       target,
                       (unsigned long long) rep.records,
                       rep.sealed ? ", sealed" : ", not sealed",
                       rep.pod ? ", pod " : "",
                       rep.pod ?: "");
        else
                printf("%s: INVALID at line %u (seq %llu): %s\n",
                       target,
                       rep.bad_line,
                       (unsigned long long) rep.bad_seq,
                       reason ?: "unknown reason");
        if (!rep.valid && !rep.sealed && !(flags & AUDIT_VERIFY_ALLOW_UNSEALED) && reason &&
            strstr(reason, "not sealed"))
                fprintf(stderr,
                        "nucleus audit: a pod that is still running has no seal yet; fix: add "
                        "--allow-unsealed to verify the records so far\n");
        return rep.valid ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}
