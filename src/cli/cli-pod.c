/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resolving what a user typed to a pod id, the way docker and kubectl users expect: a full
 * id, a unique prefix of one, or a name. The node's pod list is untrusted text: candidates in
 * an error are made visible.
 */
#include <errno.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-pod.h"
#include "escape.h"
#include "id-util.h"
#include "json-util.h"
#include "string-util.h"

#define CLI_POD_CANDIDATES_SHOWN 10

bool cli_pod_id_valid(const char *id) {
        return pod_id_valid(id);
}

bool cli_pod_state_ended(const char *state) {
        return streq_ptr(state, "exited") || streq_ptr(state, "failed");
}

static char *candidates(json_t *matches) {
        _cleanup_free_ char *out = xstrdup("");
        size_t i;
        json_t *p;
        json_array_foreach(matches, i, p) {
                if (i == CLI_POD_CANDIDATES_SHOWN) {
                        char *more = xasprintf("%s\n  ... and %zu more", out, json_array_size(matches) - i);
                        free(out);
                        out = more;
                        break;
                }
                _cleanup_free_ char *id = string_make_visible(
                                            json_string_value(json_object_get(p, "id")) ?: "?"),
                                    *name = string_make_visible(
                                            json_string_value(json_object_get(p, "name")) ?: "-"),
                                    *state = string_make_visible(
                                            json_string_value(json_object_get(p, "state")) ?: "?");
                char *more = xasprintf("%s\n  %s  %s  %s", out, id, name, state);
                free(out);
                out = more;
        }
        return TAKE_PTR(out);
}

int cli_pod_resolve(NucleusClient *c, json_t *pods, const char *ref, char **ret_id, char **reterr) {
        _cleanup_json_ json_t *fetched = NULL, *by_prefix = json_array(), *by_name = json_array(),
                              *live_by_name = json_array();
        int r;

        if (strlen(ref) == CLI_POD_FULL_ID_LEN) {
                *ret_id = xstrdup(ref);
                return 0;
        }
        if (!pods) {
                _cleanup_client_error_ ClientError e = {};
                r = client_call_json(c, "GET", "/v1/pods", NULL, &fetched, &e);
                if (r < 0) {
                        *reterr = client_error_describe(&e);
                        return r;
                }
                pods = fetched;
        }
        json_t *list = json_is_array(pods) ? pods : json_object_get(pods, "pods");
        size_t i;
        json_t *p;
        json_array_foreach(list, i, p) {
                const char *id = json_string_value(json_object_get(p, "id"));
                const char *name = json_string_value(json_object_get(p, "name"));
                if (!id || !cli_pod_id_valid(id))
                        continue;
                if (streq(id, ref)) {
                        *ret_id = xstrdup(id);
                        return 0;
                }
                if (startswith(id, ref))
                        json_array_append(by_prefix, p);
                if (streq_ptr(name, ref)) {
                        json_array_append(by_name, p);
                        if (!cli_pod_state_ended(json_string_value(json_object_get(p, "state"))))
                                json_array_append(live_by_name, p);
                }
        }

        json_t *matches = NULL;
        if (json_array_size(by_prefix) == 1 && json_array_size(by_name) == 0)
                matches = by_prefix;
        else if (json_array_size(by_prefix) == 0 && json_array_size(by_name) == 1)
                matches = by_name;
        else if (json_array_size(by_prefix) == 0 && json_array_size(live_by_name) == 1)
                matches = live_by_name; /* runs reuse names: the one still running is meant */
        if (matches) {
                *ret_id = xstrdup(json_string_value(json_object_get(json_array_get(matches, 0), "id")));
                return 0;
        }
        if (json_array_size(by_prefix) + json_array_size(by_name) == 0) {
                *ret_id = xstrdup(ref);
                return 0;
        }
        _cleanup_json_ json_t *all = json_array();
        json_array_extend(all, by_prefix);
        json_array_foreach(by_name, i, p) {
                bool dup = false;
                size_t k;
                json_t *q;
                json_array_foreach(by_prefix, k, q)
                        dup = dup || q == p;
                if (!dup)
                        json_array_append(all, p);
        }
        _cleanup_free_ char *list_text = candidates(all);
        *reterr = xasprintf(
                "'%s' matches %zu pods; use more of the id:%s", ref, json_array_size(all), list_text);
        return -EEXIST;
}
