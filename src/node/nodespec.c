/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PodSpec → node values (see nodespec.h). The untrusted body is handled by podspec_parse of
 * src/lib/spec; nothing here re-validates what it checked.
 */
#include <string.h>

#include "alloc-util.h"
#include "json-util.h"
#include "nodespec.h"
#include "podspec.h"
#include "string-util.h"
#include "vmm.h"

static char **rules_strv(const NetRule *r, size_t n) {
        char **l = xnew0(char *, 1);
        for (size_t i = 0; i < n; i++)
                strv_extend(&l, r[i].text);
        return l;
}

int nodespec_parse(const char *body, size_t n, NodeSpec **ret, char **reterr) {
        _cleanup_(podspec_freep) PodSpec *ps = NULL;
        NodeSpec *s;
        int r;

        if (n == 0) {
                *reterr = xstrdup("request body: empty; send a PodSpec as YAML or JSON");
                return -EINVAL;
        }
        r = podspec_parse(body, n, "request body", &ps, reterr);
        if (r < 0)
                return r;
        s = xnew0(NodeSpec, 1);
        s->json = podspec_to_json(ps);
        s->policy = policy_to_json(ps->policy);
        s->name = ps->name ? xstrdup(ps->name) : NULL;
        switch (ps->driver) {
        case POD_DRIVER_QEMU:
                s->driver = VMM_DRIVER_QEMU;
                break;
        case POD_DRIVER_FIRECRACKER:
                s->driver = VMM_DRIVER_FIRECRACKER;
                break;
        case POD_DRIVER_LOCAL:
                s->driver = VMM_DRIVER_LOCAL;
                break;
        case POD_DRIVER_DEFAULT:
        default:
                s->driver = -1;
                break;
        }
        s->timeout_seconds = ps->timeout_seconds;
        s->vcpus = ps->vcpus;
        s->memory_mib = ps->memory_mib;
        s->scratch_mib = ps->scratch_mib;
        s->has_network = ps->has_network;
        s->allow = rules_strv(ps->allow, ps->n_allow);
        s->deny = rules_strv(ps->deny, ps->n_deny);
        s->dns_allow = ps->dns_allow ? strv_copy(ps->dns_allow) : xnew0(char *, 1);
        s->dns_wildcard_names = ps->dns_wildcard_names;
        s->image = xstrdup(ps->image ?: PODSPEC_IMAGE_DEFAULT);
        s->base_cost_usd_micros = ps->base_cost_usd_micros;
        s->cost_per_second_usd_micros = ps->cost_per_second_usd_micros;
        s->env = ps->env ? strv_copy(ps->env) : xnew0(char *, 1);
        if (!s->json || !s->policy) {
                nodespec_free(s);
                *reterr = xstrdup("request body: the spec could not be serialised");
                return -EINVAL;
        }
        *ret = s;
        return 0;
}

NodeSpec *nodespec_free(NodeSpec *s) {
        if (!s)
                return NULL;
        json_decref(s->json);
        json_decref(s->policy);
        free(s->name);
        strv_free(s->allow);
        strv_free(s->deny);
        strv_free(s->dns_allow);
        free(s->image);
        strv_free(s->env);
        free(s);
        return NULL;
}

char *nodespec_image_dir(const NodeSpec *s, const char *images_dir) {
        if (!images_dir)
                return NULL;
        if (!s->image || streq(s->image, PODSPEC_IMAGE_DEFAULT))
                return xstrdup(images_dir);
        return xasprintf("%s/%s", images_dir, s->image); /* name syntax checked by podspec_parse */
}

json_t *nodespec_configure_args(const NodeSpec *s, const char *pod_id, const uint8_t *approver_pub) {
        json_t *a = json_pack(
                "{s:s,s:I,s:O}",
                "pod_id",
                pod_id,
                "timeout_seconds",
                (json_int_t) s->timeout_seconds,
                "policy",
                s->policy);
        json_t *costs = json_pack(
                "{s:I,s:I}",
                "base_usd_micros",
                (json_int_t) s->base_cost_usd_micros,
                "run_usd_micros_per_second",
                (json_int_t) s->cost_per_second_usd_micros);
        json_object_set_new(a, "costs", costs);
        if (s->env && s->env[0]) {
                json_t *env = json_object();
                STRV_FOREACH(e, s->env) {
                        const char *eq = strchr(*e, '=');
                        if (!eq)
                                continue;
                        _cleanup_free_ char *k = xstrndup(*e, (size_t) (eq - *e));
                        json_object_set_new(env, k, json_string(eq + 1));
                }
                json_object_set_new(a, "env", env);
        }
        if (s->dns_allow && s->dns_allow[0]) {
                json_t *d = json_array();
                STRV_FOREACH(n, s->dns_allow)
                        json_array_append_new(d, json_string(*n));
                json_object_set_new(a, "dns_allow", d);
        }
        if (approver_pub) {
                _cleanup_free_ char *hex = hexmem(approver_pub, 32);
                json_object_set_new(a, "approver_public_key", json_string(hex));
        }
        return a;
}
