/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-mcp: a stdio MCP server exposing one pod's tools. Each tools/call becomes a signed
 * POST /v1/pods/{id}/tools/{op} on nucleus-node. Configured by the pod id, the node URL and
 * the path of the node secret, or instead the path of a credential scoped to the pod
 * (--credential, docs/api.md "Scoped credentials": then the node key is never read). Flags or
 * environment; a secret itself never travels on a command line or in the environment. stdin is untrusted
 * client input; stdout carries only JSON-RPC messages, logs go to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent-node.h"
#include "agent.h"
#include "alloc-util.h"
#include "client-lease.h"
#include "client-settings.h"
#include "client.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "mcp-server.h"
#include "nucleus-config.h"
#include "string-util.h"
#include "tools.h"

static char *arg_pod = NULL;
static char *arg_url = NULL;
static char *arg_key_file = NULL;
static char *arg_actor = NULL;
static char *arg_tools = NULL;
static char *arg_profile = NULL;
static char *arg_credential = NULL;

typedef struct McpContext {
        NucleusClient *client;
        const char *pod;
} McpContext;

/* A call that needs a human approval is held in the node's approvals queue when an approver
 * (nucleus console, `nucleus approvals serve`) is attached, and retried once approved; an MCP
 * client has no terminal to ask (docs/approvals.md). */
static int call_tool(void *userdata, const char *op, json_t *args, json_t **ret_answer, char **reterr) {
        McpContext *c = userdata;
        int r = agent_node_call_tool(c->client, c->pod, op, args, ret_answer, reterr);
        if (r < 0 || !streq_ptr(json_string_value(json_object_get(*ret_answer, "kind")), "approval_required") ||
            !agent_node_approvers_attached(c->client, c->pod))
                return r;
        _cleanup_json_ json_t *res = NULL;
        _cleanup_free_ char *err = NULL;
        int h = agent_node_hold_approval(c->client, c->pod, op, args, 0, NULL, &res, &err);
        if (h == AGENT_APPROVE_RAN) {
                json_decref(*ret_answer);
                *ret_answer = TAKE_PTR(res);
        } else if (h == 1) {
                json_decref(*ret_answer);
                *ret_answer = NULL;
                return agent_node_call_tool(c->client, c->pod, op, args, ret_answer, reterr);
        } else if (h == 0) {
                _cleanup_free_ char *why = string_make_visible(
                        json_string_value(json_object_get(res, "decision_reason")) ?: "");
                _cleanup_free_ char *msg = xasprintf(
                        "a human did not approve this call%s%s; do not retry", *why ? ": " : "", why);
                json_object_set_new(*ret_answer, "error", json_string(msg));
        }
        return 0;
}

static void help(void) {
        printf("Usage: nucleus-mcp --pod ID [OPTIONS]\n"
               "A stdio MCP server (JSON-RPC 2.0, protocol %s) exposing a Nucleus pod's tools.\n\n"
               "  --pod ID           pod to act on                    ($NUCLEUS_MCP_POD)\n"
               "  --node-url URL     nucleus-node API                 ($NUCLEUS_NODE_URL, config, default)\n"
               "  --key-file PATH    node secret file (64 hex)        ($NUCLEUS_NODE_KEY_FILE, config, "
               "default)\n"
               "  --credential FILE  sign with this pod credential instead of the node key\n"
               "                     ($NUCLEUS_POD_CREDENTIAL_FILE; the JSON answer of\n"
               "                     POST /v1/pods/ID/credentials, mode 0600; implies --pod)\n"
               "  --actor NAME       actor recorded in the audit log  (default nucleus-mcp)\n"
               "  --tools LIST       offer exactly these operations   ($NUCLEUS_MCP_TOOLS, "
               "comma-separated)\n"
               "  --profile NAME     offer the operations this profile grants ($NUCLEUS_MCP_PROFILE)\n"
               "Without --tools/--profile the pod's policy is read from the node.\n",
               MCP_PROTOCOL_LATEST);
}

static int parse_argv(int argc, char **argv) {
        enum {
                ARG_POD = 0x100,
                ARG_URL,
                ARG_KEY,
                ARG_ACTOR,
                ARG_TOOLS,
                ARG_PROFILE,
                ARG_CREDENTIAL,
                ARG_VERSION
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "pod", required_argument, NULL, ARG_POD },
                { "node-url", required_argument, NULL, ARG_URL },
                { "key-file", required_argument, NULL, ARG_KEY },
                { "actor", required_argument, NULL, ARG_ACTOR },
                { "tools", required_argument, NULL, ARG_TOOLS },
                { "profile", required_argument, NULL, ARG_PROFILE },
                { "credential", required_argument, NULL, ARG_CREDENTIAL },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("nucleus-mcp %s\n", NUCLEUS_VERSION);
                        return 0;
                case ARG_POD:
                        arg_pod = optarg;
                        break;
                case ARG_URL:
                        arg_url = optarg;
                        break;
                case ARG_KEY:
                        arg_key_file = optarg;
                        break;
                case ARG_ACTOR:
                        arg_actor = optarg;
                        break;
                case ARG_TOOLS:
                        arg_tools = optarg;
                        break;
                case ARG_PROFILE:
                        arg_profile = optarg;
                        break;
                case ARG_CREDENTIAL:
                        arg_credential = optarg;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                log_error("unexpected argument '%s'", argv[optind]);
                return -EINVAL;
        }
        if (!arg_pod)
                arg_pod = secure_getenv("NUCLEUS_MCP_POD");
        if (!arg_tools)
                arg_tools = secure_getenv("NUCLEUS_MCP_TOOLS");
        if (!arg_profile)
                arg_profile = secure_getenv("NUCLEUS_MCP_PROFILE");
        if (!arg_credential)
                arg_credential = secure_getenv("NUCLEUS_POD_CREDENTIAL_FILE");
        if (isempty(arg_credential))
                arg_credential = NULL;
        if (arg_credential && arg_key_file) {
                log_error("--credential and --key-file exclude each other (a pod credential replaces the "
                          "node key)");
                return -EINVAL;
        }
        if (isempty(arg_pod) && !arg_credential) {
                log_error("no pod given: use --pod ID or $NUCLEUS_MCP_POD");
                return -EINVAL;
        }
        return 1;
}

static char **split_list(const char *s) {
        char **l = NULL;
        _cleanup_free_ char *copy = xstrdup(s);
        char *save = NULL;
        for (char *w = strtok_r(copy, ", ", &save); w; w = strtok_r(NULL, ", ", &save))
                strv_extend(&l, w);
        return l;
}

/* The operations to offer: --tools, else --profile, else the pod's policy from the node. */
static int resolve_ops(NucleusClient *client, char ***ret) {
        if (!isempty(arg_tools)) {
                *ret = split_list(arg_tools);
                return 0;
        }
        if (!isempty(arg_profile)) {
                _cleanup_(policy_freep) Policy *p = NULL;
                if (policy_profile_new(arg_profile, &p) < 0)
                        return log_error_errno(-ENOENT, "unknown profile '%s'", arg_profile);
                *ret = agent_ops_for_policy(p);
                return 0;
        }
        /* The enforced policy, as the pod's proxy reports it in `status`. */
        {
                _cleanup_json_ json_t *st = NULL, *noargs = json_object();
                _cleanup_free_ char *serr = NULL;
                _cleanup_(policy_freep) Policy *sp = NULL;
                if (agent_node_call_tool(client, arg_pod, "status", noargs, &st, &serr) >= 0 &&
                    json_is_object(json_object_get(st, "policy")) &&
                    policy_from_json(json_object_get(st, "policy"), &sp, NULL) >= 0) {
                        *ret = agent_ops_for_policy(sp);
                        return 0;
                }
        }
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", arg_pod);
        _cleanup_json_ json_t *pod = NULL;
        _cleanup_client_error_ ClientError e = {};
        int r = client_call_json(client, "GET", path, NULL, &pod, &e);
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                return log_error_errno(r, "cannot read pod %s from the node: %s", arg_pod, d);
        }
        /* The node reports the enforced policy as "policy" (or under "spec"). */
        json_t *pj = json_object_get(pod, "policy");
        if (!json_is_object(pj))
                pj = json_object_get(json_object_get(pod, "spec"), "policy");
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_free_ char *perr = NULL;
        if (json_is_object(pj) && policy_from_json(pj, &p, &perr) >= 0) {
                *ret = agent_ops_for_policy(p);
                return 0;
        }
        /* A profile name, as "policy": "NAME" (spec form) or "profile": "NAME". */
        const char *profile = json_string_value(json_object_get(pod, "profile"));
        if (!profile)
                profile = json_string_value(json_object_get(pod, "policy"));
        if (!profile)
                profile = json_string_value(json_object_get(json_object_get(pod, "spec"), "policy"));
        if (profile && policy_profile_new(profile, &p) >= 0) {
                *ret = agent_ops_for_policy(p);
                return 0;
        }
        return log_error_errno(
                -EPROTO, "the node did not report pod %s's policy; pass --tools or --profile", arg_pod);
}

/* Read one line of at most max bytes. Returns 1 with a line, 0 at EOF, -E2BIG for an
 * over-long line (consumed up to its newline), <0 on read errors. */
static int read_line(FILE *f, char **buf, size_t *n, size_t max) {
        size_t len = 0;
        bool overflow = false;
        int c;
        while ((c = fgetc(f)) != EOF) {
                if (c == '\n')
                        break;
                if (len >= max) {
                        overflow = true;
                        continue;
                }
                if (len + 1 >= *n) {
                        *n = *n ? *n * 2 : 4096;
                        *buf = xrealloc(*buf, *n);
                }
                (*buf)[len++] = (char) c;
        }
        if (c == EOF && len == 0 && !overflow)
                return ferror(f) ? -EIO : 0;
        if (overflow)
                return -E2BIG;
        if (!*buf)
                *buf = xmalloc(*n = 1);
        (*buf)[len] = 0;
        return (int) NUCLEUS_MIN(len, (size_t) INT32_MAX - 1) + 1;
}

/* A pod created with spec.lease lives only while someone renews it (docs/api.md "Leases"):
 * while this server runs, it renews the lease of the pod it serves, a third of the grace
 * period apart. A pod without a lease needs nothing. Returns the renewer or NULL. */
static ClientLease *lease_for_pod(NucleusClient *client) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", arg_pod);
        _cleanup_json_ json_t *pod = NULL;
        _cleanup_client_error_ ClientError e = {};
        if (client_call_json(client, "GET", path, NULL, &pod, &e) < 0)
                return NULL;
        json_t *grace = json_object_get(pod, "lease_grace_seconds");
        if (!json_is_integer(grace) || json_integer_value(grace) <= 0)
                return NULL;
        usec_t interval = (usec_t) json_integer_value(grace) * USEC_PER_SEC / 3;
        ClientLease *l = NULL;
        int r = client_lease_start(client, arg_pod, interval, &l);
        if (r < 0) {
                log_warning_errno(r, "cannot renew pod %s's lease: %m", arg_pod);
                return NULL;
        }
        log_info("renewing pod %s's lease every %" PRIu64 " ms", arg_pod, interval / USEC_PER_MSEC);
        return l;
}

static void write_reply(json_t *reply) {
        _cleanup_free_ char *s = json_dumps(reply, JSON_COMPACT);
        if (!s)
                return;
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
}

int main(int argc, char **argv) {
        _cleanup_(client_settings_done) ClientSettings settings = {};
        _cleanup_client_free_ NucleusClient *client = NULL;
        _cleanup_free_ char *err = NULL, *line = NULL;
        char **ops = NULL;
        size_t alloc = 0;
        int r;

        log_set_prefix("nucleus-mcp");
        (void) signal(SIGPIPE, SIG_IGN);
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? 2 : 0;

        r = client_settings_load(&settings, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot load settings"), 1;
        if (arg_url) {
                free(settings.url);
                settings.url = xstrdup(arg_url);
        }
        if (arg_key_file) {
                free(settings.key_file);
                settings.key_file = xstrdup(arg_key_file);
        }
        free(settings.actor);
        settings.actor = xstrdup(arg_actor ? arg_actor : "nucleus-mcp");
        if (arg_credential) {
                /* A credential scoped to one pod: the node key is not read at all. */
                ClientCredential cred = {};
                r = client_load_credential_file(arg_credential, &cred, &err);
                if (r < 0)
                        return log_error_errno(r, "%s", err ? err : "cannot read the credential"), 1;
                if (!streq(cred.scope, "pod") || (!isempty(arg_pod) && !streq(arg_pod, cred.pod))) {
                        log_error(
                                "%s is not a pod credential for pod %s (it is a %s credential for %s)",
                                arg_credential,
                                isempty(arg_pod) ? "(any)" : arg_pod,
                                cred.scope,
                                cred.pod);
                        explicit_bzero_safe(&cred, sizeof cred);
                        return 1;
                }
                static char pod_buf[37];
                memcpy(pod_buf, cred.pod, sizeof pod_buf);
                arg_pod = pod_buf;
                r = client_open_scoped(&settings, &cred, &client, &err);
                explicit_bzero_safe(&cred, sizeof cred);
        } else
                r = client_open(&settings, &client, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot create the node client"), 1;
        /* Tool calls such as run may take minutes: no total timeout, the pod's deadline bounds them. */
        client_set_timeouts(client, 5 * USEC_PER_SEC, 0);

        r = resolve_ops(client, &ops);
        if (r < 0)
                return 1;
        _cleanup_(client_lease_stopp) _unused_ ClientLease *lease = lease_for_pod(client);
        _cleanup_json_ json_t *tools = agent_tools_for_ops(ops);
        strv_free(ops);
        log_info("serving pod %s with %zu tools", arg_pod, json_array_size(tools));

        McpContext ctx = { .client = client, .pod = arg_pod };
        _cleanup_(mcp_server_freep) McpServer *server = mcp_server_new(tools, call_tool, &ctx);
        for (;;) {
                r = read_line(stdin, &line, &alloc, MCP_MAX_MESSAGE);
                if (r == 0)
                        break;
                if (r == -E2BIG) {
                        _cleanup_free_ char *msg = xasprintf(
                                "Invalid Request: message too large (one line is at most %u bytes)",
                                MCP_MAX_MESSAGE);
                        _cleanup_json_ json_t *rep = json_pack(
                                "{s:s, s:n, s:{s:i, s:s}}",
                                "jsonrpc",
                                "2.0",
                                "id",
                                "error",
                                "code",
                                MCP_INVALID_REQUEST,
                                "message",
                                msg);
                        write_reply(rep);
                        continue;
                }
                if (r < 0)
                        return log_error_errno(r, "reading stdin: %m"), 1;
                if (isempty(line))
                        continue;
                _cleanup_json_ json_t *reply = mcp_server_handle(server, line, strlen(line));
                if (reply)
                        write_reply(reply);
        }
        return 0;
}
