/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the agent loop (src/agent/agent.c) driven by the scripted provider with fake
 * node hooks: denials reach the model and the stats, approvals retry once, budget, turn
 * limits, interrupts and refused tool names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "alloc-util.h"
#include "json-util.h"
#include "string-util.h"
#include "tools.h"

typedef struct Fake {
        int calls;
        int approvals;
        int approve_answer; /* what approve() returns */
        bool approved;      /* the next call after an approval succeeds */
        int charge_calls;
        int charge_result;
        char log[2048];
} Fake;

static int fake_call(void *userdata, const char *op, json_t *args, json_t **ret, char **reterr) {
        Fake *f = userdata;
        f->calls++;
        strncat(f->log, op, sizeof(f->log) - strlen(f->log) - 2);
        strcat(f->log, ";");
        const char *path = json_string_value(json_object_get(args, "path"));
        if (streq(op, "read") && path && startswith(path, "/etc"))
                *ret = json_pack("{s:s, s:s}", "error", "path escapes the workspace", "kind", "sandbox_escape");
        else if (streq(op, "web_fetch"))
                *ret = json_pack(
                        "{s:s, s:s}", "error", "web_fetch is never allowed", "kind", "insufficient_capability");
        else if (streq(op, "run") && streq_ptr(json_string_value(json_array_get(json_object_get(args, "argv"), 0)), "git")) {
                if (f->approved)
                        *ret = json_pack("{s:i, s:s}", "exit_status", 0, "stdout", "pushed");
                else
                        *ret = json_pack(
                                "{s:s, s:s, s:s}",
                                "error",
                                "needs approval",
                                "kind",
                                "approval_required",
                                "operation",
                                "git_push");
        } else if (streq(op, "run") && streq_ptr(json_string_value(json_array_get(json_object_get(args, "argv"), 0)), "pytest"))
                *ret = json_pack(
                        "{s:s, s:s}",
                        "error",
                        "'pytest' is not installed in this pod's image",
                        "kind",
                        "not_found");
        else if (streq(op, "run") && streq_ptr(json_string_value(json_array_get(json_object_get(args, "argv"), 0)), "slow"))
                *ret = json_pack(
                        "{s:n, s:i, s:b, s:s, s:s}",
                        "exit_code",
                        "signal",
                        9,
                        "timed_out",
                        1,
                        "stdout",
                        "",
                        "stderr",
                        "");
        else if (streq(op, "run") && streq_ptr(json_string_value(json_array_get(json_object_get(args, "argv"), 0)), "gone"))
                *ret = json_pack(
                        "{s:s, s:s}", "error", "pod is exited: node shutdown", "kind", "pod_not_running");
        else if (streq(op, "run") && streq_ptr(json_string_value(json_array_get(json_object_get(args, "argv"), 0)), "spend"))
                *ret = json_pack("{s:s, s:s}", "error", "budget exhausted", "kind", "budget_exhausted");
        else
                *ret = json_pack("{s:s}", "contents", "hello");
        return 0;
}

static int fake_approve(void *userdata, const char *op, json_t *args, json_t *answer) {
        Fake *f = userdata;
        f->approvals++;
        if (f->approve_answer > 0)
                f->approved = true;
        return f->approve_answer;
}

static int fake_charge(void *userdata, uint64_t micros, uint64_t in, uint64_t out) {
        Fake *f = userdata;
        f->charge_calls++;
        return f->charge_result;
}

static char *write_plan(const char *json) {
        char *p = xstrdup("/tmp/test-agent-loop-XXXXXX");
        int fd = mkstemp(p);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, json, strlen(json)), (ssize_t) strlen(json));
        close(fd);
        return p;
}

static void run_plan(const char *plan, Fake *f, unsigned max_turns, volatile sig_atomic_t *intr, AgentStats *st) {
        _cleanup_free_ char *path = write_plan(plan);
        LlmConfig cfg = { .provider = LLM_PROVIDER_SCRIPT, .script_path = path };
        _cleanup_(llm_client_freep) LlmClient *c = NULL;
        _cleanup_free_ char *err = NULL;
        char *ops[] = { "read", "run", "write", NULL };
        _cleanup_json_ json_t *tools = agent_tools_for_ops(ops);
        AgentHooks h = { .call_tool = fake_call, .approve = fake_approve, .charge = fake_charge, .userdata = f };
        AgentOptions o = {
                .task = "review",
                .tools = tools,
                .max_turns = max_turns,
                .interrupt = intr,
        };
        assert_int_equal(llm_client_new(&cfg, &c, &err), 0);
        assert_int_equal(agent_run(c, &o, &h, st), 0);
        unlink(path);
}

static const char demo_plan[] = "{\"steps\":["
                                "{\"say\":\"reading\",\"tool\":\"read\",\"args\":{\"path\":\"README.md\"}},"
                                "{\"tool\":\"read\",\"args\":{\"path\":\"/etc/shadow\"}},"
                                "{\"tool\":\"web_fetch\",\"args\":{\"url\":\"http://evil\"}},"
                                "{\"tool\":\"run\",\"args\":{\"argv\":[\"git\",\"push\"]}}"
                                "],\"final\":\"All done.\"}";

/* A command killed at its timeout is shown as such, not as a bare "signal 9". */
static void test_timed_out_command_says_so(void **state) {
        Fake f = { .approve_answer = 0 };
        AgentStats st = {};
        char *buf = NULL;
        size_t len = 0;
        FILE *log = open_memstream(&buf, &len);
        assert_non_null(log);
        _cleanup_free_ char *path = write_plan("{\"steps\":[{\"tool\":\"run\",\"args\":{\"argv\":[\"slow\"]}"
                                               "}],\"final\":\"x\"}");
        LlmConfig cfg = { .provider = LLM_PROVIDER_SCRIPT, .script_path = path };
        _cleanup_(llm_client_freep) LlmClient *c = NULL;
        _cleanup_free_ char *err = NULL;
        char *ops[] = { "read", "run", "write", NULL };
        _cleanup_json_ json_t *tools = agent_tools_for_ops(ops);
        AgentHooks h = {
                .call_tool = fake_call, .approve = fake_approve, .charge = fake_charge, .userdata = &f
        };
        AgentOptions o = { .task = "t", .tools = tools, .log_out = log };
        assert_int_equal(llm_client_new(&cfg, &c, &err), 0);
        assert_int_equal(agent_run(c, &o, &h, &st), 0);
        fclose(log);
        unlink(path);
        assert_non_null(strstr(buf, "-> ok (timed out and killed; a longer command needs timeout_seconds)"));
        assert_null(strstr(buf, "signal 9"));
        assert_true(json_is_true(json_object_get(json_array_get(st.calls, 0), "timed_out")));
        free(buf);
        agent_stats_done(&st);
}

/* A pod that ended under the run (the node stopped) ends the run; it is not a denial. */
static void test_pod_gone_is_not_a_denial(void **state) {
        Fake f = { .approve_answer = 0 };
        AgentStats st = {};
        run_plan(
                "{\"steps\":[{\"tool\":\"run\",\"args\":{\"argv\":[\"gone\"]}},"
                "{\"tool\":\"read\",\"args\":{\"path\":\"a\"}}],\"final\":\"x\"}",
                &f,
                0,
                NULL,
                &st);
        assert_int_equal(st.tool_calls, 1);
        assert_int_equal(st.denials, 0);
        assert_null(json_object_get(st.denials_by_kind, "pod_not_running"));
        assert_int_equal(st.stop, AGENT_STOP_ERROR);
        agent_stats_done(&st);
}

/* A program missing from the image is a failed call, not a denial. */
static void test_not_found_is_not_a_denial(void **state) {
        Fake f = { .approve_answer = 0 };
        AgentStats st = {};
        run_plan(
                "{\"steps\":[{\"tool\":\"run\",\"args\":{\"argv\":[\"pytest\"]}},"
                "{\"tool\":\"read\",\"args\":{\"path\":\"/etc/shadow\"}}],\"final\":\"x\"}",
                &f,
                0,
                NULL,
                &st);
        assert_int_equal(st.tool_calls, 2);
        assert_int_equal(st.denials, 1);
        assert_null(json_object_get(st.denials_by_kind, "not_found"));
        assert_int_equal(json_integer_value(json_object_get(st.denials_by_kind, "sandbox_escape")), 1);
        agent_stats_done(&st);
}

static void test_denials_and_approval_refused(void **state) {
        Fake f = { .approve_answer = 0 };
        AgentStats st = {};
        run_plan(demo_plan, &f, 0, NULL, &st);
        assert_int_equal(st.stop, AGENT_STOP_DONE);
        assert_int_equal(st.turns, 5);
        assert_int_equal(st.tool_calls, 4);
        /* web_fetch is not offered but exists: the node (proxy) refuses it, and audits it. */
        assert_string_equal(f.log, "read;read;web_fetch;run;");
        assert_int_equal(f.approvals, 1);
        assert_int_equal(st.denials, 3);
        assert_int_equal(json_integer_value(json_object_get(st.denials_by_kind, "sandbox_escape")), 1);
        assert_int_equal(json_integer_value(json_object_get(st.denials_by_kind, "insufficient_capability")), 1);
        assert_int_equal(json_integer_value(json_object_get(st.denials_by_kind, "approval_required")), 1);
        assert_string_equal(st.final_text, "All done.");
        assert_int_equal(f.charge_calls, 0); /* scripts use no tokens */
        _cleanup_json_ json_t *j = agent_stats_to_json(&st);
        assert_string_equal(json_string_value(json_object_get(j, "stop")), "done");
        assert_int_equal(json_array_size(json_object_get(j, "calls")), 4);
        agent_stats_done(&st);
}

static void test_approval_granted(void **state) {
        Fake f = { .approve_answer = 1 };
        AgentStats st = {};
        run_plan(demo_plan, &f, 0, NULL, &st);
        assert_string_equal(f.log, "read;read;web_fetch;run;run;"); /* retried once after approval */
        assert_int_equal(st.denials, 2);
        assert_null(json_object_get(st.denials_by_kind, "approval_required"));
        /* The summary records say how each call ended: exit code, output heads, duration;
         * money is a number. */
        _cleanup_json_ json_t *j = agent_stats_to_json(&st);
        json_t *calls = json_object_get(j, "calls");
        json_t *push = json_array_get(calls, json_array_size(calls) - 1);
        assert_string_equal(json_string_value(json_object_get(push, "tool")), "run");
        assert_int_equal(json_integer_value(json_object_get(push, "exit_code")), 0);
        assert_string_equal(json_string_value(json_object_get(push, "stdout_head")), "pushed");
        assert_true(json_is_integer(json_object_get(push, "duration_ms")));
        assert_null(json_object_get(push, "stderr_head"));
        assert_true(json_is_real(json_object_get(j, "cost_usd")));
        assert_true(json_real_value(json_object_get(j, "cost_usd")) == 0.0);
        agent_stats_done(&st);
}

static void test_max_turns(void **state) {
        Fake f = {};
        AgentStats st = {};
        run_plan(demo_plan, &f, 2, NULL, &st);
        assert_int_equal(st.stop, AGENT_STOP_MAX_TURNS);
        assert_int_equal(st.turns, 2);
        assert_non_null(strstr(st.stop_detail, "--max-turns 2"));
        agent_stats_done(&st);
}

static void test_budget_stop(void **state) {
        Fake f = {};
        AgentStats st = {};
        run_plan(
                "{\"steps\":[{\"tool\":\"run\",\"args\":{\"argv\":[\"spend\"]}},"
                "{\"tool\":\"read\",\"args\":{\"path\":\"x\"}}]}",
                &f,
                0,
                NULL,
                &st);
        assert_int_equal(st.stop, AGENT_STOP_BUDGET);
        assert_string_equal(f.log, "run;");
        agent_stats_done(&st);
}

static void test_interrupt(void **state) {
        Fake f = {};
        AgentStats st = {};
        volatile sig_atomic_t intr = 1;
        run_plan(demo_plan, &f, 0, &intr, &st);
        assert_int_equal(st.stop, AGENT_STOP_INTERRUPTED);
        assert_int_equal(f.calls, 0);
        agent_stats_done(&st);
}

static void test_bad_plans(void **state) {
        const char *bad[] = {
                "{\"steps\":[{\"tool\":1}]}",
                "{\"steps\":[{\"tool\":\"read\",\"args\":[]}]}",
                "{\"steps\":{}}",
                "{\"steps\":[],\"extra\":1}",
                "{\"steps\":[{\"tool\":\"read\",\"arg\":{}}]}",
                "not json",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *path = write_plan(bad[i]);
                LlmConfig cfg = { .provider = LLM_PROVIDER_SCRIPT, .script_path = path };
                _cleanup_(llm_client_freep) LlmClient *c = NULL;
                _cleanup_free_ char *err = NULL;
                assert_true(llm_client_new(&cfg, &c, &err) < 0);
                assert_non_null(strstr(err, path));
                unlink(path);
        }
}

static void test_describe(void **state) {
        _cleanup_json_ json_t *a = json_pack("{s:s}", "path", "a\x1b[2Jb");
        _cleanup_free_ char *d = agent_describe_call("read", a, 200);
        assert_null(strchr(d, 0x1b));
        assert_non_null(strstr(d, "read {\"path\":"));
        _cleanup_free_ char *s = agent_describe_call("read", a, 10);
        assert_int_equal(strlen(s), 10);
        /* The arguments read as the JSON they are: a quote is \", not \\\". */
        _cleanup_json_ json_t *q = json_pack("{s:s}", "new", "b\"\\x00\" \xe2\x80\xae");
        _cleanup_free_ char *e = agent_describe_call("edit", q, 200);
        assert_string_equal(e, "edit {\"new\":\"b\\\"\\\\x00\\\" \\u202e\"}");
        _cleanup_free_ char *n = agent_describe_call("x\x1b[2J", NULL, 200);
        assert_null(strchr(n, 0x1b));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_denials_and_approval_refused),
                cmocka_unit_test(test_not_found_is_not_a_denial),
                cmocka_unit_test(test_approval_granted),
                cmocka_unit_test(test_max_turns),
                cmocka_unit_test(test_budget_stop),
                cmocka_unit_test(test_interrupt),
                cmocka_unit_test(test_pod_gone_is_not_a_denial),
                cmocka_unit_test(test_timed_out_command_says_so),
                cmocka_unit_test(test_bad_plans),
                cmocka_unit_test(test_describe),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
