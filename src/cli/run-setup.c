/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The setup step of `nucleus run` (run-setup.h). Commands are the user's input, not the
 * agent's: they do not pass the policy's command rules, but they are split into argv here with
 * the same shell-words rules the policy uses and never reach a shell unless the user wrote one
 * (`sh -c '...'`). What the node answers (the commands' output) is untrusted text from the pod
 * and is made visible before it is printed.
 */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "escape.h"
#include "json-util.h"
#include "podspec.h"
#include "run-setup.h"
#include "string-util.h"
#include "words.h"

void run_setup_done(RunSetup *s) {
        json_decref(s->commands);
        s->commands = NULL;
        s->hosts = strv_free(s->hosts);
}

static int add_argv(RunSetup *s, const char *where, json_t *argv, char **reterr) {
        if (!s->commands)
                s->commands = json_array();
        if (json_array_size(s->commands) >= RUN_SETUP_COMMANDS_MAX) {
                json_decref(argv);
                *reterr = xasprintf("%s: at most %u setup commands", where, RUN_SETUP_COMMANDS_MAX);
                return -E2BIG;
        }
        json_array_append_new(s->commands, argv);
        return 0;
}

int run_setup_add_command(RunSetup *s, const char *where, const char *command, char **reterr) {
        _cleanup_strv_free_ char **words = NULL;
        _cleanup_free_ char *vis = string_make_visible(command);
        unsigned meta = 0;
        int r = words_split(command, &words, &meta);
        if (r < 0) {
                *reterr = xasprintf(
                        "%s '%s': %s",
                        where,
                        vis,
                        r == -E2BIG ? "too long" : "unterminated quote or trailing backslash");
                return r;
        }
        if (strv_length(words) == 0) {
                *reterr = xasprintf("%s: an empty command", where);
                return -EINVAL;
        }
        /* Without a shell these would not mean what they say (a pipe, a redirection, a
         * variable or a glob would reach the program as literal text): say so instead. */
        if (meta &
            (WORDS_META_SEPARATOR | WORDS_META_REDIRECT | WORDS_META_SUBST | WORDS_META_NEWLINE |
             WORDS_META_SUBSHELL | WORDS_META_EXPANSION)) {
                *reterr = xasprintf(
                        "%s '%s': setup commands run as argv, without a shell, and this one uses shell "
                        "syntax (; & | < > $ ` ( ) * ? [ ~ or a newline); quote literal characters, or ask "
                        "for a shell explicitly: --setup \"sh -c '...'\"",
                        where,
                        vis);
                return -EINVAL;
        }
        json_t *argv = json_array();
        STRV_FOREACH(w, words)
                json_array_append_new(argv, json_string(*w));
        return add_argv(s, where, argv, reterr);
}

int run_setup_add_host(RunSetup *s, const char *where, const char *host, char **reterr) {
        _cleanup_free_ char *norm = NULL, *err = NULL;
        if (podspec_check_dns_name(host, &norm, &err) < 0) {
                _cleanup_free_ char *vis = string_make_visible(host);
                *reterr = xasprintf("%s '%s': %s", where, vis, err ?: "not a host name");
                return -EINVAL;
        }
        if (strv_contains(s->hosts, norm))
                return 0;
        if (strv_length(s->hosts) >= RUN_SETUP_HOSTS_MAX) {
                *reterr = xasprintf("%s: at most %u setup hosts", where, RUN_SETUP_HOSTS_MAX);
                return -E2BIG;
        }
        strv_consume(&s->hosts, TAKE_PTR(norm));
        return 0;
}

int run_setup_from_json(RunSetup *s, const json_t *setup, const char *file, char **reterr) {
        static const char *const keys[] = { "commands", "hosts", "timeout_seconds", NULL };
        const char *k;
        json_t *v, *x;
        size_t i;
        int r;

        if (!json_is_object(setup)) {
                *reterr = xasprintf("%s: setup: a table expected", file);
                return -EINVAL;
        }
        json_object_foreach((json_t *) setup, k, v)
                if (!strv_contains((char **) keys, k)) {
                        _cleanup_free_ char *vis = string_make_visible(k);
                        *reterr = xasprintf(
                                "%s: setup: unknown key \"%s\" (commands, hosts, timeout_seconds)", file, vis);
                        return -EINVAL;
                }
        if ((v = json_object_get(setup, "commands"))) {
                if (!json_is_array(v)) {
                        *reterr = xasprintf("%s: setup.commands: a list expected", file);
                        return -EINVAL;
                }
                json_array_foreach(v, i, x) {
                        _cleanup_free_ char *where = xasprintf("%s: setup.commands[%zu]", file, i);
                        if (json_is_string(x)) {
                                r = run_setup_add_command(s, where, json_string_value(x), reterr);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        /* A list is an argv as is: no splitting, nothing refused but NUL. */
                        size_t j;
                        json_t *a;
                        if (!json_is_array(x) || json_array_size(x) == 0) {
                                *reterr = xasprintf(
                                        "%s: a command string or a non-empty argv list expected", where);
                                return -EINVAL;
                        }
                        json_array_foreach(x, j, a)
                                if (!json_is_string(a) ||
                                    strlen(json_string_value(a)) != json_string_length(a)) {
                                        *reterr = xasprintf("%s[%zu]: a string without NUL expected", where, j);
                                        return -EINVAL;
                                }
                        r = add_argv(s, where, json_deep_copy(x), reterr);
                        if (r < 0)
                                return r;
                }
        }
        if ((v = json_object_get(setup, "hosts"))) {
                if (!json_is_array(v)) {
                        *reterr = xasprintf("%s: setup.hosts: a list expected", file);
                        return -EINVAL;
                }
                json_array_foreach(v, i, x) {
                        _cleanup_free_ char *where = xasprintf("%s: setup.hosts[%zu]", file, i);
                        if (!json_is_string(x)) {
                                *reterr = xasprintf("%s: a host name string expected", where);
                                return -EINVAL;
                        }
                        r = run_setup_add_host(s, where, json_string_value(x), reterr);
                        if (r < 0)
                                return r;
                }
        }
        if ((v = json_object_get(setup, "timeout_seconds"))) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                    json_integer_value(v) > RUN_SETUP_TIMEOUT_MAX) {
                        *reterr = xasprintf(
                                "%s: setup.timeout_seconds: an integer 1..%u expected",
                                file,
                                RUN_SETUP_TIMEOUT_MAX);
                        return -EINVAL;
                }
                s->timeout_seconds = (uint64_t) json_integer_value(v);
        }
        return 0;
}

static char *argv_text(const json_t *argv) {
        _cleanup_strv_free_ char **l = NULL;
        size_t i;
        json_t *a;
        json_array_foreach(argv, i, a)
                strv_extend(&l, json_string_value(a) ?: "");
        _cleanup_free_ char *joined = words_join(l);
        return string_make_visible(joined);
}

/* One stream of the command's answer on our stderr: "stdout"/"stderr", or their base64 forms,
 * which the proxy sends when the text is not UTF-8 or would not fit a JSON answer. */
static void print_output(json_t *ans, const char *name) {
        _cleanup_free_ char *key64 = xasprintf("%s_base64", name);
        _cleanup_free_ uint8_t *raw = NULL;
        const char *t = json_string_value(json_object_get(ans, name));
        size_t n = t ? json_string_length(json_object_get(ans, name)) : 0;
        const char *b64 = json_string_value(json_object_get(ans, key64));
        if (!t && b64) {
                size_t len = strlen(b64);
                raw = xmalloc(len / 4 * 3 + 3);
                if (sodium_base642bin(
                            raw, len / 4 * 3 + 3, b64, len, NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) !=
                    0)
                        return;
                t = (const char *) raw;
        }
        if (!t || n == 0)
                return;
        _cleanup_free_ char *vis = escape_text(t, n, ESCAPE_KEEP_NEWLINE);
        fprintf(stderr, "%s%s", vis, endswith(vis, "\n") ? "" : "\n");
}

int run_setup_execute(NucleusClient *client, const char *pod_id, const RunSetup *s, char **reterr) {
        _cleanup_client_free_ NucleusClient *c = client_clone(client);
        _cleanup_json_ json_t *body = json_pack("{s:O}", "commands", s->commands), *ans = NULL;
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s/setup", pod_id);
        _cleanup_client_error_ ClientError e = {};
        uint64_t per = s->timeout_seconds ?: 600;
        size_t n = json_array_size(s->commands);

        if (s->timeout_seconds)
                json_object_set_new(body, "timeout_seconds", json_integer((json_int_t) s->timeout_seconds));
        /* The node answers when every command has ended: wait for all of them, plus the baseline. */
        client_set_timeouts(c, 5 * USEC_PER_SEC, (per * n + 600) * USEC_PER_SEC);
        if (strv_length(s->hosts) > 0) {
                _cleanup_free_ char *h = strv_join(s->hosts, ", ");
                fprintf(stderr,
                        "[nucleus] setup: %zu command%s, network open only to %s\n",
                        n,
                        n == 1 ? "" : "s",
                        h);
        } else
                fprintf(stderr, "[nucleus] setup: %zu command%s, no network\n", n, n == 1 ? "" : "s");
        int r = client_call_json(c, "POST", path, body, &ans, &e);
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                *reterr = xasprintf("the setup step failed: %s", d);
                return r;
        }
        size_t i;
        json_t *res;
        json_array_foreach(json_object_get(ans, "results"), i, res) {
                _cleanup_free_ char *cmd = argv_text(json_object_get(res, "argv"));
                json_t *code = json_object_get(res, "exit_code");
                const char *error = json_string_value(json_object_get(res, "error"));
                if (json_is_true(json_object_get(res, "success"))) {
                        fprintf(stderr,
                                "[nucleus] setup: %s: ok (%.1f s)\n",
                                cmd,
                                (double) json_integer_value(json_object_get(res, "duration_ms")) / 1000.0);
                        continue;
                }
                if (error) {
                        _cleanup_free_ char *vis = string_make_visible(error);
                        fprintf(stderr, "[nucleus] setup: %s: %s\n", cmd, vis);
                } else if (json_is_true(json_object_get(res, "timed_out")))
                        fprintf(stderr, "[nucleus] setup: %s: timed out; its output:\n", cmd);
                else if (json_is_integer(code))
                        fprintf(stderr,
                                "[nucleus] setup: %s: exit status %lld; its output:\n",
                                cmd,
                                (long long) json_integer_value(code));
                else
                        fprintf(stderr,
                                "[nucleus] setup: %s: killed by signal %lld; its output:\n",
                                cmd,
                                (long long) json_integer_value(json_object_get(res, "signal")));
                print_output(res, "stdout");
                print_output(res, "stderr");
        }
        if (!json_is_true(json_object_get(ans, "ok"))) {
                const char *why = json_string_value(json_object_get(ans, "error"));
                _cleanup_free_ char *vis = why ? string_make_visible(why) : NULL;
                *reterr = vis ? xasprintf("the setup step failed: %s", vis)
                              : xstrdup("a setup command failed (its output is above); nothing was started "
                                        "for the agent");
                return -EIO;
        }
        fprintf(stderr, "[nucleus] setup: done; network closed, workspace baseline recorded again\n");
        return 0;
}
