/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus audit verify FILE|POD: verify a hash-chained, signed audit log with src/lib/audit's
 * verifier and the audit public key (secrets dir, or --public-key FILE). A POD id fetches the
 * log from the node first (signed GET /v1/pods/ID/audit); a live pod's log may be unsealed.
 */
#include <errno.h>
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
#include "json-util.h"
#include "secrets.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus audit verify FILE|POD [OPTIONS]\n\n"
               "Verify an audit log: syntax, order, hash chain, signatures and seal.\n"
               "A path (containing '/' or naming an existing file) is read locally; otherwise the\n"
               "argument is a pod id and the log is fetched from the node.\n\n"
               "Options:\n"
               "      --public-key FILE   Audit public key (default: <secrets dir>/audit.pub)\n"
               "      --allow-unsealed    Accept a log without a seal (a pod still running)\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

/* The log the node keeps for pod on this machine. NULL when unknown or not readable. */
static char *local_audit_log(const char *pod) {
        _cleanup_free_ char *dir = cli_local_pod_dir(pod);
        if (!dir)
                return NULL;
        char *p = xasprintf("%s/audit.jsonl", dir);
        if (access(p, R_OK) < 0)
                return mfree(p);
        return p;
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
        _cleanup_free_ char *keyfile = NULL, *err = NULL;
        _cleanup_(audit_verify_report_done) AuditVerifyReport rep = {};
        OutputMode output = OUTPUT_TEXT;
        unsigned flags = 0;
        uint8_t pub[32];
        struct stat st;
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
        if (optind + 2 != argc || !streq(argv[optind], "verify"))
                return cli_usage_error("audit", "expected: nucleus audit verify FILE|POD");
        const char *target = argv[optind + 1];

        if (!keyfile && client_secret_file("audit.pub", &keyfile) < 0) {
                fprintf(stderr,
                        "nucleus audit: cannot locate the secrets directory; use --public-key FILE.\n");
                return CLI_EXIT_FAILURE;
        }
        r = secret_load_file(keyfile, pub, sizeof(pub), /* strict_perms= */ false, &err);
        if (r < 0) {
                fprintf(stderr, "nucleus audit: audit public key: %s\n", err ?: strerror(-r));
                return CLI_EXIT_FAILURE;
        }

        bool is_file = strchr(target, '/') || stat(target, &st) == 0;
        if (is_file)
                r = audit_verify_file(target, pub, flags, &rep);
        else {
                _cleanup_client_free_ NucleusClient *cl = NULL;
                _cleanup_client_error_ ClientError e = {};
                _cleanup_(client_response_done) ClientResponse resp = {};
                if (!cli_pod_id_valid(target))
                        return cli_usage_error("audit", "'%s' is neither a file nor a pod id", target);
                r = client_open_default(&cl, &err);
                if (r < 0) {
                        fprintf(stderr, "nucleus audit: %s\n", err ?: strerror(-r));
                        return CLI_EXIT_FAILURE;
                }
                _cleanup_free_ char *path = xasprintf("/v1/pods/%s/audit", target);
                r = client_request(cl, "GET", path, NULL, NULL, 0, &resp, &e);
                if (r >= 0 && (resp.status < 200 || resp.status >= 300)) {
                        client_error_from_response(&resp, &e);
                        r = -EREMOTEIO;
                }
                _cleanup_free_ char *local = NULL;
                if (r < 0 && e.status == 404 && (local = local_audit_log(target))) {
                        /* A node forgets the pods of its earlier runs; their logs stay on disk. */
                        fprintf(stderr,
                                "nucleus audit: the node does not know pod %s (restarted since?); "
                                "verifying the log it left at %s\n",
                                target,
                                local);
                        r = audit_verify_file(local, pub, flags, &rep);
                } else if (r < 0) {
                        _cleanup_free_ char *d = client_error_describe(&e);
                        fprintf(stderr, "nucleus audit: fetching the log of pod %s: %s\n", target, d);
                        return CLI_EXIT_FAILURE;
                } else
                        r = audit_verify_buffer(resp.body, resp.size, pub, flags, &rep);
        }
        if (r < 0) {
                fprintf(stderr, "nucleus audit: cannot read %s: %s\n", target, strerror(-r));
                return CLI_EXIT_FAILURE;
        }
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
