/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent loop; see agent.h. Tool calls requested by the model are untrusted: names are
 * checked against the offered tools, arguments are forwarded to the proxy (which enforces
 * the policy), answers are capped before they go back to the model.
 */
#include <errno.h>
#include <string.h>

#include "agent.h"
#include "alloc-util.h"
#include "escape.h"
#include "json-util.h"
#include "pricing.h"
#include "string-util.h"
#include "time-util.h"
#include "tools.h"

#define AGENT_RESULT_MAX (64U * 1024U) /* bytes of a tool answer given to the model */
#define AGENT_HEAD_MAX 512U            /* bytes of each output kept in a call's summary record */

static const char *const agent_stop_table[_AGENT_STOP_MAX] = {
        [AGENT_STOP_DONE] = "done",
        [AGENT_STOP_MAX_TURNS] = "max_turns",
        [AGENT_STOP_DEADLINE] = "deadline",
        [AGENT_STOP_BUDGET] = "budget",
        [AGENT_STOP_INTERRUPTED] = "interrupted",
        [AGENT_STOP_ERROR] = "error",
};
DEFINE_STRING_TABLE_LOOKUP(agent_stop, AgentStop);

static const char agent_default_system[] = "You are a software agent working inside a Nucleus sandbox: a "
                                           "microVM whose /workspace holds a "
                                           "copy of the user's project. You can act only through the tools "
                                           "provided; every call is checked "
                                           "against a security policy. When a tool returns an error with a "
                                           "\"kind\" (for example path_denied, "
                                           "command_denied, network_denied, approval_required), the action "
                                           "was refused: do not repeat it, "
                                           "adapt or explain what you could not do. Paths are relative to "
                                           "the workspace. Changes you make in "
                                           "the workspace are returned to the user as a patch for review. "
                                           "Finish with a concise answer.";

void agent_stats_done(AgentStats *s) {
        if (!s)
                return;
        s->stop_detail = mfree(s->stop_detail);
        s->final_text = mfree(s->final_text);
        json_decref(s->denials_by_kind);
        json_decref(s->calls);
        s->denials_by_kind = s->calls = NULL;
}

json_t *agent_stats_to_json(const AgentStats *s) {
        return json_pack(
                "{s:s, s:s, s:I, s:{s:I, s:I}, s:I, s:f, s:I, s:I, s:O, s:O, s:s}",
                "stop",
                agent_stop_to_string(s->stop) ?: "error",
                "stop_detail",
                s->stop_detail ?: "",
                "turns",
                (json_int_t) s->turns,
                "tokens",
                "input",
                (json_int_t) s->input_tokens,
                "output",
                (json_int_t) s->output_tokens,
                "cost_micros",
                (json_int_t) s->cost_micros,
                "cost_usd",
                (double) s->cost_micros / 1e6,
                "tool_calls",
                (json_int_t) s->tool_calls,
                "denials",
                (json_int_t) s->denials,
                "denials_by_kind",
                s->denials_by_kind ? s->denials_by_kind : json_object(),
                "calls",
                s->calls ? s->calls : json_array(),
                "final_text",
                s->final_text ?: "");
}

char *agent_describe_call(const char *op, json_t *args, size_t max) {
        _cleanup_free_ char *a = args ? json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        /* The arguments are JSON already (control characters escaped by it): hidden code points
         * become JSON escapes too and nothing else changes, so a quote shows as \" rather than
         * the doubly escaped \\\". The name is the model's: escaped as any text. */
        _cleanup_free_ char *vop = string_make_visible(op ? op : "?");
        _cleanup_free_ char *vargs = a ? escape_text(a, strlen(a), ESCAPE_JSON) : xstrdup("{}");
        char *vis = xasprintf("%s %s", vop, vargs);
        if (max >= 4 && strlen(vis) > max)
                strcpy(vis + max - 3, "...");
        return vis;
}

typedef struct TextSink {
        FILE *f;
        bool any;
        bool ends_nl;
} TextSink;

static void on_text(const char *t, size_t n, void *userdata) {
        TextSink *s = userdata;
        if (!s->f || n == 0)
                return;
        /* Model text is shown to a terminal: make control characters visible except
         * newlines and tabs, so a model cannot drive the user's terminal. */
        _cleanup_free_ char *copy = xstrndup(t, n);
        for (char *line = copy, *next; line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                _cleanup_free_ char *vis = string_make_visible(line);
                fputs(vis, s->f);
                if (next)
                        fputc('\n', s->f);
        }
        fflush(s->f);
        s->any = true;
        s->ends_nl = t[n - 1] == '\n';
}

static bool tool_offered(json_t *tools, const char *name) {
        json_t *t;
        size_t i;
        json_array_foreach(tools, i, t)
                if (streq_ptr(json_string_value(json_object_get(t, "name")), name))
                        return true;
        return false;
}

static const char *answer_kind(json_t *answer) {
        if (!json_is_object(answer) || !json_object_get(answer, "error"))
                return NULL;
        const char *k = json_string_value(json_object_get(answer, "kind"));
        return k ? k : "internal";
}

/* For command answers: " (exit N: first line of output)", made visible and short; else "". */
static char *answer_detail(json_t *answer) {
        json_t *code = json_object_get(answer, "exit_code");
        if (!code)
                code = json_object_get(answer, "exit_status");
        json_t *sig = json_object_get(answer, "signal");
        if (!json_is_integer(code) && !(json_is_integer(sig) && json_integer_value(sig) > 0))
                return xstrdup("");
        const char *out = json_string_value(json_object_get(answer, "stdout"));
        const char *err = json_string_value(json_object_get(answer, "stderr"));
        const char *text = !isempty(out) &&
                        (!json_is_integer(code) || json_integer_value(code) == 0 || isempty(err))
                ? out
                : err;
        _cleanup_free_ char *line = xstrndup(text ? text : "", 100);
        line[strcspn(line, "\n")] = 0;
        _cleanup_free_ char *vis = string_make_visible(line);
        /* A command the proxy killed at its timeout says so: "signal 9" alone reads like a crash. */
        bool timed_out = json_is_true(json_object_get(answer, "timed_out"));
        _cleanup_free_ char *status = timed_out ? xstrdup("timed out and killed; a longer command needs "
                                                          "timeout_seconds")
                : json_is_integer(code) ? xasprintf("exit %lld", (long long) json_integer_value(code))
                                        : xasprintf("signal %lld", (long long) json_integer_value(sig));
        return isempty(vis) ? xasprintf(" (%s)", status) : xasprintf(" (%s: %s)", status, vis);
}

/* The first AGENT_HEAD_MAX bytes of text, cut at a character boundary (invalid UTF-8 made
 * valid: the record is JSON). */
static json_t *head_json(const char *text) {
        size_t n = strlen(text);
        if (n > AGENT_HEAD_MAX) {
                n = AGENT_HEAD_MAX;
                while (n > 0 && ((unsigned char) text[n] & 0xc0) == 0x80)
                        n--;
        }
        _cleanup_free_ char *h = utf8_make_valid(xstrndup(text, n));
        return json_string(h) ?: json_string("");
}

/* What a summary record says about a performed call's result: its duration, a command's exit
 * code (or signal), and the heads of its outputs (a command's stdout/stderr, a read's
 * content). */
static void call_record_add_result(json_t *rec, json_t *answer, uint64_t duration_ms) {
        json_object_set_new(rec, "duration_ms", json_integer((json_int_t) duration_ms));
        json_t *code = json_object_get(answer, "exit_code") ?: json_object_get(answer, "exit_status");
        if (json_is_integer(code))
                json_object_set_new(rec, "exit_code", json_integer(json_integer_value(code)));
        json_t *sig = json_object_get(answer, "signal");
        if (json_is_integer(sig) && json_integer_value(sig) > 0)
                json_object_set_new(rec, "signal", json_integer(json_integer_value(sig)));
        if (json_is_true(json_object_get(answer, "timed_out")))
                json_object_set_new(rec, "timed_out", json_true());
        static const struct {
                const char *from, *to;
        } heads[] = {
                { "stdout", "stdout_head" },
                { "stderr", "stderr_head" },
                { "content", "output_head" },
        };
        for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
                const char *t = json_string_value(json_object_get(answer, heads[i].from));
                if (t)
                        json_object_set_new(rec, heads[i].to, head_json(t));
        }
}

static char *result_text(json_t *answer) {
        _cleanup_free_ char *s = json_dumps(answer, JSON_COMPACT);
        if (!s)
                return xstrdup("{}");
        if (strlen(s) > AGENT_RESULT_MAX) {
                char *t = xasprintf(
                        "%.*s... [truncated: answer was %zu bytes; ask for less, e.g. read with "
                        "offset/length]",
                        (int) AGENT_RESULT_MAX,
                        s,
                        strlen(s));
                return t;
        }
        return TAKE_PTR(s);
}

static void set_stop(AgentStats *s, AgentStop stop, char *detail) {
        s->stop = stop;
        free(s->stop_detail);
        s->stop_detail = detail;
}

static bool limits_reached(const AgentOptions *o, AgentStats *s) {
        if (o->interrupt && *o->interrupt) {
                set_stop(s, AGENT_STOP_INTERRUPTED, xstrdup("interrupted (Ctrl-C)"));
                return true;
        }
        if (o->deadline > 0 && now_usec(CLOCK_MONOTONIC) >= o->deadline) {
                set_stop(s, AGENT_STOP_DEADLINE, xstrdup("deadline reached (--timeout)"));
                return true;
        }
        return false;
}

/* Performs one tool call with the approval retry; returns the answer (never NULL). */
static json_t *do_call(
        const AgentOptions *o, const AgentHooks *h, const char *name, json_t *args, char **ret_transport_err) {
        json_t *answer = NULL;
        _cleanup_free_ char *err = NULL;

        /* A tool the policy does not grant but that exists is still sent to the pod: its proxy
         * refuses it with the authoritative kind and the node audits the attempt. Names that
         * are no tool at all never leave this process. */
        if (!tool_offered(o->tools, name) && !agent_tool_find(name))
                return json_pack(
                        "{s:s, s:s}",
                        "error",
                        isempty(name) ? "tool call without a name" : "unknown tool (no such sandbox operation)",
                        "kind",
                        "invalid_request");

        int r = h->call_tool(h->userdata, name, args, &answer, &err);
        if (r == -EINTR)
                /* Ctrl-C while the call ran (a long command): the run ends; the pod's deletion
                 * ends the command. */
                return json_pack(
                        "{s:s, s:s}", "error", "interrupted before the call finished", "kind", "interrupted");
        if (r < 0) {
                *ret_transport_err = err ? TAKE_PTR(err) : xasprintf("tool call failed: %s", strerror(-r));
                return json_pack("{s:s, s:s}", "error", "the sandbox could not be reached", "kind", "internal");
        }
        if (streq_ptr(answer_kind(answer), "approval_required")) {
                int a = h->approve ? h->approve(h->userdata, name, args, answer) : 0;
                if (a == AGENT_APPROVE_RAN) {
                        /* The hook obtained the approval and the call ran: answer holds its result. */
                } else if (a > 0) {
                        json_t *again = NULL;
                        err = mfree(err);
                        r = h->call_tool(h->userdata, name, args, &again, &err);
                        if (r < 0) {
                                *ret_transport_err = err ? TAKE_PTR(err)
                                                         : xasprintf("tool call failed: %s", strerror(-r));
                                json_decref(answer);
                                return json_pack(
                                        "{s:s, s:s}",
                                        "error",
                                        "the sandbox could not be reached",
                                        "kind",
                                        "internal");
                        }
                        json_decref(answer);
                        answer = again;
                } else if (!json_object_get(answer, "refusal_reason")) {
                        /* Tell the model plainly that a human (or the lack of one) said no. */
                        json_object_set_new(
                                answer,
                                "error",
                                json_string(
                                        a == 0 ? "approval required and not granted (no approver "
                                                 "available or the user declined); do not retry"
                                               : "approval could not be obtained; do not retry"));
                }
        }
        return answer ? answer : json_object();
}

/* A refusal by the policy (counted and reported as a denial), as opposed to a call that failed
 * for another reason: a program missing from the image, a malformed request, our own error. */
static bool kind_is_denial(const char *kind) {
        static const char *const not_denials[] = {
                "not_found", "invalid_request", "internal",        "too_large", "unsupported",
                "io_error",  "interrupted",     "pod_not_running", NULL,
        };
        for (const char *const *k = not_denials; *k; k++)
                if (streq(kind, *k))
                        return false;
        return true;
}

int agent_run(LlmClient *c, const AgentOptions *o, const AgentHooks *h, AgentStats *ret) {
        _cleanup_json_ json_t *messages = json_array();
        TextSink sink = { .f = o->text_out, .ends_nl = true };

        *ret = (AgentStats){
                .stop = AGENT_STOP_ERROR,
                .denials_by_kind = json_object(),
                .calls = json_array(),
                .final_text = xstrdup(""),
        };
        if (isempty(o->task) || !h || !h->call_tool) {
                ret->stop_detail = xstrdup("invalid agent options");
                return -EINVAL;
        }
        if (o->interrupt)
                llm_client_set_interrupt(c, o->interrupt);
        llm_client_set_deadline(c, o->deadline);
        json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", o->task));

        for (;;) {
                LlmResponse resp = {};
                _cleanup_free_ char *err = NULL;

                if (limits_reached(o, ret))
                        break;
                if (o->max_turns > 0 && ret->turns >= o->max_turns) {
                        set_stop(
                                ret,
                                AGENT_STOP_MAX_TURNS,
                                xasprintf("turn limit reached (--max-turns %u)", o->max_turns));
                        break;
                }

                int r = llm_client_complete(
                        c,
                        o->system ? o->system : agent_default_system,
                        messages,
                        o->tools,
                        on_text,
                        &sink,
                        &resp,
                        &err);
                if (sink.any && !sink.ends_nl && sink.f) {
                        fputc('\n', sink.f);
                        fflush(sink.f);
                        sink.ends_nl = true;
                }
                if (r == -EINTR) {
                        set_stop(ret, AGENT_STOP_INTERRUPTED, xstrdup("interrupted (Ctrl-C)"));
                        break;
                }
                if (r == -EDQUOT) {
                        set_stop(ret, AGENT_STOP_BUDGET, err ? TAKE_PTR(err) : xstrdup("budget exhausted"));
                        break;
                }
                if (r == -ETIME) {
                        set_stop(
                                ret,
                                AGENT_STOP_DEADLINE,
                                xstrdup("deadline reached while the model was answering"));
                        break;
                }
                if (r < 0) {
                        set_stop(
                                ret,
                                AGENT_STOP_ERROR,
                                err ? TAKE_PTR(err) : xasprintf("model error: %s", strerror(-r)));
                        break;
                }
                ret->turns++;
                ret->input_tokens += resp.input_tokens;
                ret->output_tokens += resp.output_tokens;
                uint64_t cost = pricing_cost_micros(
                        resp.input_tokens, resp.output_tokens, o->price_in, o->price_out);
                ret->cost_micros += cost;
                free(ret->final_text);
                ret->final_text = xstrdup(resp.text);

                json_t *am = json_pack("{s:s, s:s}", "role", "assistant", "content", resp.text);
                if (json_array_size(resp.tool_calls) > 0)
                        json_object_set(am, "tool_calls", resp.tool_calls);
                json_array_append_new(messages, am);

                if (h->charge && (cost > 0 || resp.input_tokens + resp.output_tokens > 0)) {
                        r = h->charge(h->userdata, cost, resp.input_tokens, resp.output_tokens);
                        if (r == -EDQUOT) {
                                llm_response_done(&resp);
                                set_stop(
                                        ret,
                                        AGENT_STOP_BUDGET,
                                        xstrdup("budget exhausted (model usage charged to the pod)"));
                                break;
                        }
                        if (r < 0) {
                                llm_response_done(&resp);
                                set_stop(
                                        ret,
                                        AGENT_STOP_ERROR,
                                        xasprintf("charging model usage failed: %s", strerror(-r)));
                                break;
                        }
                }

                if (json_array_size(resp.tool_calls) == 0) {
                        llm_response_done(&resp);
                        set_stop(
                                ret,
                                AGENT_STOP_DONE,
                                xstrdup(streq_ptr(resp.stop_reason, "max_tokens") ? "model stopped (output "
                                                                                    "token limit)"
                                                                                  : "model finished"));
                        break;
                }

                bool stop = false;
                json_t *call;
                size_t i;
                json_array_foreach(resp.tool_calls, i, call) {
                        const char *id = json_string_value(json_object_get(call, "id"));
                        const char *name = json_string_value(json_object_get(call, "name"));
                        json_t *args = json_object_get(call, "input");
                        _cleanup_free_ char *transport_err = NULL;
                        _cleanup_json_ json_t *answer = NULL;
                        bool performed = false;
                        uint64_t duration_ms = 0;

                        const char *invalid = json_string_value(json_object_get(call, "invalid_arguments"));
                        if (invalid && !stop) {
                                /* Arguments that were not a JSON object: never sent to the pod;
                                 * the model is told and can send the call again. */
                                answer = json_pack("{s:s, s:s}", "error", invalid, "kind", "invalid_request");
                                if (o->log_out) {
                                        _cleanup_free_ char *e = string_make_visible(invalid);
                                        fprintf(o->log_out, "[tool] %s -> NOT RUN: %s\n", name ?: "?", e);
                                        fflush(o->log_out);
                                }
                        } else if (stop || limits_reached(o, ret)) {
                                /* Every tool_use needs a result in the transcript. */
                                answer = json_pack(
                                        "{s:s, s:s}",
                                        "error",
                                        "not run: the session is stopping",
                                        "kind",
                                        "time_violation");
                                stop = true;
                        } else {
                                usec_t t0 = now_usec(CLOCK_MONOTONIC);
                                answer = do_call(o, h, name, args, &transport_err);
                                duration_ms = (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC;
                                ret->tool_calls++;
                                performed = true;
                        }
                        const char *kind = answer_kind(answer);
                        _cleanup_free_ char *desc = agent_describe_call(name, args, 200);
                        if (performed) {
                                json_t *rec = json_pack(
                                        "{s:s, s:O, s:s}",
                                        "tool",
                                        name ?: "",
                                        "args",
                                        args ? args : json_null(),
                                        "outcome",
                                        kind ?: "ok");
                                if (kind)
                                        json_object_set(rec, "error", json_object_get(answer, "error"));
                                call_record_add_result(rec, answer, duration_ms);
                                json_array_append_new(ret->calls, rec);
                        }
                        bool denied = kind && kind_is_denial(kind);
                        if (denied && performed) {
                                ret->denials++;
                                json_int_t n = json_integer_value(json_object_get(ret->denials_by_kind, kind));
                                json_object_set_new(ret->denials_by_kind, kind, json_integer(n + 1));
                        }
                        if (o->log_out && performed) {
                                if (kind) {
                                        _cleanup_free_ char *e = string_make_visible(
                                                json_string_value(json_object_get(answer, "error")) ?: "");
                                        fprintf(o->log_out,
                                                "[tool] %s -> %s %s: %s\n",
                                                desc,
                                                denied ? "DENIED" : "failed",
                                                kind,
                                                e);
                                } else {
                                        _cleanup_free_ char *detail = answer_detail(answer);
                                        fprintf(o->log_out, "[tool] %s -> ok%s\n", desc, detail);
                                }
                                fflush(o->log_out);
                        }
                        _cleanup_free_ char *text = result_text(answer);
                        json_array_append_new(
                                messages,
                                json_pack(
                                        "{s:s, s:s, s:s, s:s, s:b}",
                                        "role",
                                        "tool",
                                        "tool_call_id",
                                        id ?: "",
                                        "name",
                                        name ?: "",
                                        "content",
                                        text,
                                        "is_error",
                                        kind != NULL));
                        if (!performed)
                                ;
                        else if (transport_err) {
                                set_stop(ret, AGENT_STOP_ERROR, TAKE_PTR(transport_err));
                                stop = true;
                        } else if (streq_ptr(kind, "budget_exhausted")) {
                                set_stop(
                                        ret,
                                        AGENT_STOP_BUDGET,
                                        xstrdup("budget exhausted (a tool call was refused for budget)"));
                                stop = true;
                        } else if (streq_ptr(kind, "time_violation") && performed) {
                                set_stop(
                                        ret,
                                        AGENT_STOP_DEADLINE,
                                        xstrdup("deadline reached (the sandbox refused for time)"));
                                stop = true;
                        } else if (streq_ptr(kind, "interrupted")) {
                                set_stop(ret, AGENT_STOP_INTERRUPTED, xstrdup("interrupted (Ctrl-C)"));
                                stop = true;
                        } else if (streq_ptr(kind, "pod_not_running")) {
                                set_stop(ret, AGENT_STOP_ERROR, xstrdup("the pod is no longer running"));
                                stop = true;
                        }
                }
                llm_response_done(&resp);
                if (stop)
                        break;
        }
        if (!ret->stop_detail)
                ret->stop_detail = xstrdup(agent_stop_to_string(ret->stop));
        return 0;
}
