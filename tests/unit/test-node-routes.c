/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the node's route table (src/node/api-routes.c): matching by method and path,
 * placeholders, 405 versus 404, the columns read at header time (cap, streaming, scope). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "api-internal.h"
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_match_exact),
                cmocka_unit_test(test_match_placeholders),
                cmocka_unit_test(test_method_not_allowed),
                cmocka_unit_test(test_upload_columns),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
