/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PodSpec → node values (see nodespec.h). The untrusted body is handled by podspec_parse of
 * src/lib/spec; nothing here re-validates what it checked.
 */
#include <inttypes.h>
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
        s->policy = TAKE_PTR(ps->policy);
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
        s->has_timeout = ps->has_timeout;
        s->timeout_seconds = ps->timeout_seconds;
        s->has_lease = ps->has_lease;
        s->lease_grace_seconds = ps->lease_grace_seconds;
        s->vcpus = ps->vcpus;
        s->memory_mib = ps->memory_mib;
        s->scratch_mib = ps->scratch_mib;
        s->has_network = ps->has_network;
        s->allow = rules_strv(ps->allow, ps->n_allow);
        s->deny = rules_strv(ps->deny, ps->n_deny);
        s->dns_allow = ps->dns_allow ? strv_copy(ps->dns_allow) : xnew0(char *, 1);
        s->dns_wildcard_names = ps->dns_wildcard_names;
        s->setup_hosts = ps->setup_hosts ? strv_copy(ps->setup_hosts) : xnew0(char *, 1);
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
        policy_free(s->policy);
        free(s->name);
        strv_free(s->allow);
        strv_free(s->deny);
        strv_free(s->dns_allow);
        strv_free(s->setup_hosts);
        free(s->image);
        strv_free(s->env);
        free(s);
        return NULL;
}

/* Every pointer nodespec_free frees is copied here (keep the two in step). */
NodeSpec *nodespec_copy(const NodeSpec *s) {
        NodeSpec *c = xnew0(NodeSpec, 1);
        *c = *s;
        c->setup_hosts = strv_copy(s->setup_hosts);
        c->json = json_deep_copy(s->json);
        c->policy = policy_copy(s->policy);
        c->name = s->name ? xstrdup(s->name) : NULL;
        c->allow = strv_copy(s->allow);
        c->deny = strv_copy(s->deny);
        c->dns_allow = strv_copy(s->dns_allow);
        c->image = s->image ? xstrdup(s->image) : NULL;
        c->env = strv_copy(s->env);
        if (!c->json)
                oom_abort();
        return c;
}

char *nodespec_image_dir(const NodeSpec *s, const char *images_dir) {
        if (!images_dir)
                return NULL;
        if (!s->image || streq(s->image, PODSPEC_IMAGE_DEFAULT))
                return xstrdup(images_dir);
        return xasprintf("%s/%s", images_dir, s->image); /* name syntax checked by podspec_parse */
}

int nodespec_resolve_timeout(NodeSpec *s, uint64_t default_sec, uint64_t max_sec, char **reterr) {
        usec_t window = s->policy->max_duration_usec;
        if (s->has_timeout) {
                if (s->timeout_seconds > max_sec) {
                        *reterr = xasprintf(
                                "spec.timeout_seconds: %" PRIu64 " exceeds this node's limit of %" PRIu64 " "
                                "s"
                                "e"
                                "c"
                                "o"
                                "n"
                                "d"
                                "s"
                                " "
                                "("
                                "["
                                "p"
                                "o"
                                "d"
                                "s"
                                "]"
                                " "
                                "m"
                                "a"
                                "x"
                                "_"
                                "t"
                                "i"
                                "m"
                                "e"
                                "o"
                                "u"
                                "t"
                                "_"
                                "s"
                                "e"
                                "c"
                                "o"
                                "n"
                                "d"
                                "s"
                                ")",
                                s->timeout_seconds,
                                max_sec);
                        return -EINVAL;
                }
        } else {
                uint64_t t = NUCLEUS_MIN(default_sec, max_sec);
                if (window != USEC_INFINITY && window / USEC_PER_SEC < t)
                        t = NUCLEUS_MAX(window / USEC_PER_SEC, (usec_t) 1);
                s->timeout_seconds = t;
        }
        s->policy->max_duration_usec = s->timeout_seconds * USEC_PER_SEC;
        return 0;
}

Configure *nodespec_configure(const NodeSpec *s, const char *pod_id, const uint8_t *approver_pub) {
        Configure *c = xnew0(Configure, 1);
        c->pod_id = xstrdup(pod_id);
        c->policy = policy_copy(s->policy);
        c->time_remaining = USEC_INFINITY;
        c->have_base_cost = c->have_run_cost = true;
        c->base_cost_usd_micros = s->base_cost_usd_micros;
        c->run_cost_usd_micros_per_second = s->cost_per_second_usd_micros;
        if (s->env && s->env[0])
                c->env = strv_copy(s->env);
        if (s->dns_allow && s->dns_allow[0])
                c->dns_allow = strv_copy(s->dns_allow);
        if (approver_pub) {
                c->have_approver = true;
                memcpy(c->approver_key, approver_pub, sizeof c->approver_key);
        }
        return c;
}
