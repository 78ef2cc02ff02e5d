/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus-audit: offline verifier for Nucleus audit logs (docs/audit.md).
 *   nucleus-audit verify FILE (--public-key HEX | --public-key-file PATH) [--allow-unsealed]
 *                 [--output text|json]
 * Exit: 0 valid, 1 invalid (or unreadable), 2 usage, 3 valid chain but repaired (the node cut
 * a torn final line and recorded the cut in a signed "audit_repair" record). The log file is untrusted
 * input; the public key comes from the operator, out of band.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "audit.h"
#include "json-util.h"
#include "log.h"
#include "secrets.h"
#include "string-util.h"

static const char *arg_public_key = NULL;
static const char *arg_public_key_file = NULL;
static bool arg_json = false;
static bool arg_allow_unsealed = false;

static int help(FILE *f) {
        fprintf(f,
                "Usage: nucleus-audit verify FILE (--public-key HEX | --public-key-file PATH)\n"
                "                     [--allow-unsealed] [--output text|json]\n"
                "Verify the chain, signatures and seal of a Nucleus audit log.\n"
                "Exit status: 0 valid, 1 invalid, 2 usage error, 3 repaired (valid chain with\n"
                "signed records of cut torn lines).\n");
        return f == stdout ? 0 : 2;
}

static int parse_key_hex(const char *s, uint8_t pk[32]) {
        size_t got = 0, n = strlen(s);
        const char *end = NULL;
        if (n > 0 && s[n - 1] == '\n')
                n--;
        if (n != 64 || sodium_hex2bin(pk, 32, s, n, NULL, &got, &end) != 0 || got != 32 || end != s + n)
                return -EINVAL;
        return 0;
}

int main(int argc, char **argv) {
        enum {
                ARG_PUBLIC_KEY = 0x100,
                ARG_PUBLIC_KEY_FILE,
                ARG_OUTPUT,
                ARG_ALLOW_UNSEALED
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "public-key", required_argument, NULL, ARG_PUBLIC_KEY },
                { "public-key-file", required_argument, NULL, ARG_PUBLIC_KEY_FILE },
                { "output", required_argument, NULL, ARG_OUTPUT },
                { "allow-unsealed", no_argument, NULL, ARG_ALLOW_UNSEALED },
                {},
        };
        uint8_t pk[32];
        int c, r;

        log_set_prefix("nucleus-audit");
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        return help(stdout);
                case ARG_PUBLIC_KEY:
                        arg_public_key = optarg;
                        break;
                case ARG_PUBLIC_KEY_FILE:
                        arg_public_key_file = optarg;
                        break;
                case ARG_OUTPUT:
                        if (streq(optarg, "json"))
                                arg_json = true;
                        else if (streq(optarg, "text"))
                                arg_json = false;
                        else {
                                log_error("--output must be text or json");
                                return 2;
                        }
                        break;
                case ARG_ALLOW_UNSEALED:
                        arg_allow_unsealed = true;
                        break;
                default:
                        return help(stderr);
                }
        if (argc - optind != 2 || !streq(argv[optind], "verify"))
                return help(stderr);
        if (!!arg_public_key == !!arg_public_key_file) {
                log_error("exactly one of --public-key and --public-key-file is required");
                return 2;
        }
        if (sodium_init() < 0) {
                log_error("libsodium initialisation failed");
                return 1;
        }
        if (arg_public_key) {
                if (parse_key_hex(arg_public_key, pk) < 0) {
                        log_error("--public-key must be 64 hex characters (an Ed25519 public key)");
                        return 2;
                }
        } else {
                _cleanup_free_ char *err = NULL;
                r = secret_load_file(arg_public_key_file, pk, 32, false, &err);
                if (r < 0) {
                        log_error("%s", err ? err : "cannot load the public key");
                        return 2;
                }
        }

        const char *path = argv[optind + 1];
        AuditVerifyReport rep = {};
        r = audit_verify_file(path, pk, arg_allow_unsealed ? AUDIT_VERIFY_ALLOW_UNSEALED : 0, &rep);
        if (r < 0) {
                if (arg_json) {
                        _cleanup_json_ json_t *j = json_pack(
                                "{s:b,s:s,s:s}", "valid", 0, "file", path, "error", strerror(-r));
                        _cleanup_free_ char *t = json_dumps(j, JSON_SORT_KEYS);
                        printf("%s\n", t);
                }
                log_error_errno(r, "Cannot read %s: %m", path);
                return 1;
        }
        if (arg_json) {
                _cleanup_json_ json_t *j = json_pack(
                        "{s:b,s:s,s:I,s:b}",
                        "valid",
                        rep.valid,
                        "file",
                        path,
                        "records",
                        (json_int_t) rep.records,
                        "sealed",
                        rep.sealed);
                if (rep.valid && rep.repairs > 0) {
                        json_object_set_new(j, "repaired", json_true());
                        json_object_set_new(j, "repairs", json_integer((json_int_t) rep.repairs));
                        json_object_set_new(j, "cut_bytes", json_integer((json_int_t) rep.cut_bytes));
                }
                if (rep.pod)
                        json_object_set_new(j, "pod", json_string(rep.pod));
                if (!rep.valid) {
                        json_object_set_new(j, "error", json_string(rep.reason));
                        json_object_set_new(j, "bad_seq", json_integer((json_int_t) rep.bad_seq));
                        json_object_set_new(j, "bad_line", json_integer(rep.bad_line));
                }
                _cleanup_free_ char *t = json_dumps(j, JSON_SORT_KEYS);
                printf("%s\n", t);
        } else if (rep.valid && rep.repairs > 0)
                printf("repaired: %s: %" PRIu64 " records%s, pod %s; %" PRIu64 " signed repair record(s): "
                       "%" PRIu64 " bytes of torn final lines were cut\n",
                       path,
                       rep.records,
                       rep.sealed ? ", sealed" : " (not sealed)",
                       rep.pod ? rep.pod : "-",
                       rep.repairs,
                       rep.cut_bytes);
        else if (rep.valid)
                printf("ok: %s: %" PRIu64 " records%s, pod %s\n",
                       path,
                       rep.records,
                       rep.sealed ? ", sealed" : " (not sealed)",
                       rep.pod ? rep.pod : "-");
        else
                fprintf(stderr, "nucleus-audit: INVALID: %s: %s\n", path, rep.reason);
        r = !rep.valid ? 1 : rep.repairs > 0 ? 3 : 0;
        audit_verify_report_done(&rep);
        return r;
}
