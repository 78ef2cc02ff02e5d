/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the node's route table (src/node/api-routes.c): matching by method and path,
 * placeholders, 405 versus 404, the columns read at header time (cap, streaming, scope). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-internal.h"
#include "channel.h"
#include "json-util.h"
#include "id-util.h"

#define POD "0b5c7e2a-1f3d-4c8e-9a6b-2d4f6e8a0c1e"

static void test_match_exact(void **state) {
        ApiMatch m;
        assert_true(api_route_match("GET", "/v1/health", &m));
        assert_non_null(m.route);
        assert_int_equal(m.route->scope, API_SCOPE_PUBLIC);
        assert_int_equal(m.route->cap, API_CAP_NONE);
        api_match_done(&m);

        assert_true(api_route_match("POST", "/v1/pods", &m));
        assert_ptr_equal(m.route->handler, api_h_create);
        assert_int_equal(m.route->scope, API_SCOPE_NODE);
        assert_null(m.pod_id);
        api_match_done(&m);
}

static void test_match_placeholders(void **state) {
        ApiMatch m;
        assert_true(api_route_match("POST", "/v1/pods/" POD "/tools/read", &m));
        assert_ptr_equal(m.route->handler, api_h_tool);
        assert_string_equal(m.pod_id, POD);
        assert_string_equal(m.args[0], "read");
        assert_null(m.args[1]);
        assert_int_equal(m.route->scope, API_SCOPE_POD);
        api_match_done(&m);

        /* The id is captured unchecked; the dispatcher checks it (404). */
        assert_true(api_route_match("GET", "/v1/pods/NOT-A-UUID", &m));
        assert_string_equal(m.pod_id, "NOT-A-UUID");
        assert_false(pod_id_is_uuid(m.pod_id));
        api_match_done(&m);
        assert_true(pod_id_is_uuid(POD));
        assert_false(pod_id_is_uuid("0B5C7E2A-1F3D-4C8E-9A6B-2D4F6E8A0C1E"));
        assert_false(pod_id_is_uuid(POD "0"));

        /* A placeholder is one non-empty segment. */
        assert_false(api_route_match("POST", "/v1/pods/" POD "/tools/a/b", &m));
        assert_false(api_route_match("POST", "/v1/pods/" POD "/tools/", &m));
        assert_false(api_route_match("GET", "/v1/pods//logs", &m));
        assert_false(api_route_match("GET", "/v1/pods/" POD "/", &m));
        assert_false(api_route_match("GET", "/v1/podsx", &m));
        assert_false(api_route_match("GET", "/v1/nothing", &m));
        assert_false(api_route_match("GET", "", &m));
}

static void test_method_not_allowed(void **state) {
        ApiMatch m;
        assert_true(api_route_match("PATCH", "/v1/pods", &m));
        assert_null(m.route);
        assert_non_null(m.any);
        char *allowed = api_route_methods(m.any);
        assert_string_equal(allowed, "POST or GET");
        free(allowed);
        api_match_done(&m);

        assert_true(api_route_match("POST", "/v1/health", &m));
        assert_null(m.route);
        assert_int_equal(m.any->scope, API_SCOPE_PUBLIC); /* answered 405 without a signature */
        api_match_done(&m);

        assert_true(api_route_match("PUT", "/v1/pods/" POD, &m));
        assert_null(m.route);
        assert_string_equal(m.pod_id, POD);
        allowed = api_route_methods(m.any);
        assert_string_equal(allowed, "GET or DELETE");
        free(allowed);
        api_match_done(&m);
}

static void test_upload_columns(void **state) {
        ApiMatch m;
        /* The one place that knows the upload route: its row. */
        assert_true(api_route_match("PUT", "/v1/pods/" POD "/workspace", &m));
        assert_int_equal(m.route->cap, API_CAP_WORKSPACE);
        assert_true(m.route->flags & API_STREAM);
        api_match_done(&m);
        assert_true(api_route_match("GET", "/v1/pods/" POD "/workspace/patch", &m));
        assert_int_equal(m.route->cap, API_CAP_JSON);
        assert_false(m.route->flags & API_STREAM);
        api_match_done(&m);
        assert_true(api_route_match("GET", "/v1/pods/" POD "/logs", &m));
        assert_true(m.route->flags & API_QUERY);
        api_match_done(&m);
}

/* A tool call's body holds a write of the pod's max_file_bytes as JSON, within the node's cap. */
static void test_tool_body_cap(void **state) {
        const uint64_t MiB = 1024 * 1024;
        ApiMatch m;
        assert_true(api_route_match("POST", "/v1/pods/" POD "/tools/write", &m));
        assert_int_equal(m.route->cap, API_CAP_TOOL);
        api_match_done(&m);
        assert_int_equal(api_tool_body_cap(2 * MiB, 64 * MiB, 16 * MiB), 33 * MiB);
        assert_int_equal(api_tool_body_cap(2 * MiB, 20 * MiB, 16 * MiB), 20 * MiB);   /* node cap */
        assert_int_equal(api_tool_body_cap(40 * MiB, 20 * MiB, 16 * MiB), 40 * MiB);  /* never below */
        assert_int_equal(api_tool_body_cap(2 * MiB, 64 * MiB, UINT64_MAX), 64 * MiB); /* no overflow */
}

static void test_write_content(void **state) {
        const uint8_t *b = NULL;
        uint8_t *owned = NULL;
        size_t n = 0;
        char *err = NULL;
        json_t *a = json_pack("{s:s, s:s}", "path", "x", "content", "h\"i\n");
        assert_int_equal(api_write_content(a, &b, &n, &owned, &err), 0);
        assert_int_equal(n, 4);
        assert_null(owned); /* text is not copied */
        assert_memory_equal(b, "h\"i\n", 4);
        json_t *w = api_write_wire_args(a, b, n);
        assert_null(json_object_get(w, "content"));
        assert_non_null(json_object_get(a, "content")); /* the caller's arguments are untouched */
        assert_string_equal(json_string_value(json_object_get(w, "path")), "x");
        assert_int_equal(json_integer_value(json_object_get(w, "content_bytes")), 4);
        assert_int_equal(strlen(json_string_value(json_object_get(w, "content_sha256"))), 64);
        json_decref(w);
        json_decref(a);

        a = json_pack("{s:s, s:s}", "path", "x", "content_base64", "AP8A");
        assert_int_equal(api_write_content(a, &b, &n, &owned, &err), 0);
        assert_int_equal(n, 3);
        assert_ptr_equal(b, owned);
        assert_memory_equal(b, "\0\xff\0", 3);
        w = api_write_wire_args(a, b, n);
        assert_null(json_object_get(w, "content_base64"));
        assert_string_equal(
                json_string_value(json_object_get(w, "content_sha256")),
                "2c8d07cd986f58eb210bd800133d6645c7340c59865377c8ea431cebca0b3113");
        json_decref(w);
        free(owned);
        owned = NULL;
        json_decref(a);

        /* Neither, both, or bad base64: refused with a reason. */
        const char *bad[] = { "{\"path\":\"x\"}",
                              "{\"content\":\"a\",\"content_base64\":\"YQ==\"}",
                              "{\"content_base64\":\"!!!\"}",
                              "{\"content\":1}" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                a = json_loads(bad[i], 0, NULL);
                assert_non_null(a);
                assert_int_equal(api_write_content(a, &b, &n, &owned, &err), -EINVAL);
                assert_non_null(err);
                assert_null(owned);
                free(err);
                err = NULL;
                json_decref(a);
        }
}

/* The streamed digest of a call's arguments is the audit log's args_sha256. */
static void test_args_sha256(void **state) {
        json_t *a = json_pack(
                "{s:s, s:s, s:b, s:i}",
                "path",
                "d/\u00fc.txt",
                "content",
                "a\"\\\n\x01/z",
                "create_dirs",
                1,
                "mode",
                420);
        char *t = json_dump_canonical(a);
        char want[65], got[65];
        sha256_hex(t, strlen(t), want);
        api_args_sha256(a, got);
        assert_string_equal(got, want);
        free(t);
        json_decref(a);
}

/* The size test that picks streaming agrees with what channel_begin encodes. */
static void test_channel_request_size(void **state) {
        json_t *a = json_pack("{s:s, s:s}", "path", "a.txt", "content", "q\"\n\u00fc");
        char *args = json_dumps(a, JSON_COMPACT);
        char *want = NULL;
        assert_true(asprintf(&want, "{\"op\":\"write\",\"args\":%s}", args) > 0);
        assert_int_equal(channel_request_size("write", a), strlen(want));
        assert_int_equal(channel_request_size("status", NULL), strlen("{\"op\":\"status\",\"args\":{}}"));
        free(want);
        free(args);
        json_decref(a);
}

#define OTHER "9a6b2d4f-6e8a-4c1e-8b5c-7e2a1f3d4c8e"

static ApiScopeDecision decide(const char *method, const char *path, const ApiCaller *who) {
        ApiMatch m;
        assert_true(api_route_match(method, path, &m));
        assert_non_null(m.route);
        ApiScopeDecision d = api_scope_decide(m.route, m.pod_id, who);
        api_match_done(&m);
        return d;
}

/* The scope column decides: the node key everything but RUN routes; a pod credential only its
 * pod's POD routes while the pod lives; a run credential only its pod's RUN routes. */
static void test_scope_decision(void **state) {
        const ApiCaller node = { .scoped = false };
        const ApiCaller pod = { .scoped = true, .scope = POD_CRED_POD, .pod_id = POD };
        const ApiCaller ended = { .scoped = true, .scope = POD_CRED_POD, .pod_id = POD, .pod_ended = true };
        const ApiCaller run = { .scoped = true, .scope = POD_CRED_RUN, .pod_id = POD };

        assert_int_equal(decide("GET", "/v1/health", &pod), API_SCOPE_ALLOW);
        assert_int_equal(decide("POST", "/v1/pods", &node), API_SCOPE_ALLOW);
        assert_int_equal(decide("GET", "/v1/pods/" POD, &node), API_SCOPE_ALLOW);
        assert_int_equal(decide("POST", "/v1/pods/" POD "/tools/read", &node), API_SCOPE_ALLOW);

        /* A pod credential: its pod's tool, status, events, lease, approval queue. */
        assert_int_equal(decide("GET", "/v1/pods/" POD, &pod), API_SCOPE_ALLOW);
        assert_int_equal(decide("POST", "/v1/pods/" POD "/tools/read", &pod), API_SCOPE_ALLOW);
        assert_int_equal(decide("GET", "/v1/pods/" POD "/events", &pod), API_SCOPE_ALLOW);
        assert_int_equal(decide("POST", "/v1/pods/" POD "/lease", &pod), API_SCOPE_ALLOW);
        assert_int_equal(decide("GET", "/v1/pods/" POD "/approvals", &pod), API_SCOPE_ALLOW);
        assert_int_equal(decide("GET", "/v1/pods/" POD "/approvals/a1", &pod), API_SCOPE_ALLOW);
        /* ... never the node's routes, the workspace, deletion, logs, audit, minting. */
        const char *node_only[][2] = {
                { "POST", "/v1/pods" },
                { "GET", "/v1/pods" },
                { "POST", "/v1/pods/prune" },
                { "GET", "/v1/pool" },
                /* The setup step opens the pod's egress: the agent's credential must never reach it. */
                { "POST", "/v1/pods/" POD "/setup" },
                { "PUT", "/v1/pods/" POD "/workspace" },
                { "GET", "/v1/pods/" POD "/workspace/patch" },
                { "DELETE", "/v1/pods/" POD },
                { "POST", "/v1/pods/" POD "/cancel" },
                { "POST", "/v1/pods/" POD "/remove" },
                { "GET", "/v1/pods/" POD "/logs" },
                { "GET", "/v1/pods/" POD "/audit" },
                { "POST", "/v1/pods/" POD "/credentials" },
                { "POST", "/v1/pods/" POD "/approvals" },
                { "POST", "/v1/pods/" POD "/approvals/a1" },
                { "GET", "/v1/approvals" },
                { "POST", "/v1/approvers" },
        };
        for (size_t i = 0; i < ELEMENTSOF(node_only); i++) {
                assert_int_equal(decide(node_only[i][0], node_only[i][1], &pod), API_SCOPE_DENY_NODE_ONLY);
                assert_int_equal(decide(node_only[i][0], node_only[i][1], &run), API_SCOPE_DENY_NODE_ONLY);
                assert_int_equal(decide(node_only[i][0], node_only[i][1], &node), API_SCOPE_ALLOW);
        }
        /* ... nor another pod's, nor once its pod ended. */
        assert_int_equal(decide("GET", "/v1/pods/" OTHER, &pod), API_SCOPE_DENY_OTHER_POD);
        assert_int_equal(decide("POST", "/v1/pods/" OTHER "/tools/read", &pod), API_SCOPE_DENY_OTHER_POD);
        assert_int_equal(decide("GET", "/v1/pods/" POD, &ended), API_SCOPE_DENY_ENDED);
        assert_int_equal(decide("POST", "/v1/pods/" POD "/tools/read", &ended), API_SCOPE_DENY_ENDED);

        /* A run credential signs no POD route. */
        assert_int_equal(decide("GET", "/v1/pods/" POD, &run), API_SCOPE_DENY_POD_CRED);
        assert_int_equal(decide("POST", "/v1/pods/" POD "/tools/read", &run), API_SCOPE_DENY_POD_CRED);

        /* Budget reserve and settle: only a run credential of that pod, not the node key. */
        const ApiCaller run_ended = { .scoped = true, .scope = POD_CRED_RUN, .pod_id = POD, .pod_ended = true };
        const char *budget[] = { "/v1/pods/" POD "/budget/reserve", "/v1/pods/" POD "/budget/settle" };
        for (size_t i = 0; i < ELEMENTSOF(budget); i++) {
                assert_int_equal(decide("POST", budget[i], &run), API_SCOPE_ALLOW);
                assert_int_equal(decide("POST", budget[i], &node), API_SCOPE_DENY_RUN_ONLY);
                assert_int_equal(decide("POST", budget[i], &pod), API_SCOPE_DENY_RUN_ONLY);
                assert_int_equal(decide("POST", budget[i], &run_ended), API_SCOPE_DENY_ENDED);
        }
        assert_int_equal(decide("POST", "/v1/pods/" OTHER "/budget/reserve", &run), API_SCOPE_DENY_OTHER_POD);

        /* A scoped caller without a pod id (defensive) is never taken for any pod. */
        const ApiCaller nopod = { .scoped = true, .scope = POD_CRED_POD };
        assert_int_equal(decide("GET", "/v1/pods/" POD, &nopod), API_SCOPE_DENY_OTHER_POD);

        assert_string_equal(api_scope_decision_detail(API_SCOPE_DENY_NODE_ONLY), "node_key_required");
        assert_string_equal(api_scope_decision_detail(API_SCOPE_DENY_ENDED), "pod_ended");
        assert_string_equal(api_scope_decision_detail((ApiScopeDecision) 99), "other");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_match_exact),        cmocka_unit_test(test_match_placeholders),
                cmocka_unit_test(test_method_not_allowed), cmocka_unit_test(test_upload_columns),
                cmocka_unit_test(test_scope_decision),     cmocka_unit_test(test_tool_body_cap),
                cmocka_unit_test(test_write_content),      cmocka_unit_test(test_channel_request_size),
                cmocka_unit_test(test_args_sha256),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
