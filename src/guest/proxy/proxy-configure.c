/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The configure op: accepted exactly once, before anything else. Its JSON comes from the node
 * (trusted to pick the policy, but still parsed strictly by the contract's parser,
 * src/lib/proto/configure.c). Everything is decided into local values first and committed
 * with one assignment at the end, so a refused configure leaves the proxy as it was.
 * Schema in docs/proxy.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/random.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "configure.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "netif-util.h"
#include "proxy.h"
#include "string-util.h"

/* Apply the contract's limits (0: not given) over the current ones. */
static void limits_apply(ProxyLimits *l, const Configure *c) {
        static const size_t offset[_CONFIGURE_LIMIT_MAX] = {
                [CONFIGURE_LIMIT_MAX_READ_BYTES] = offsetof(ProxyLimits, max_read_bytes),
                [CONFIGURE_LIMIT_MAX_FILE_BYTES] = offsetof(ProxyLimits, max_file_bytes),
                [CONFIGURE_LIMIT_MAX_OUTPUT_BYTES] = offsetof(ProxyLimits, max_output_bytes),
                [CONFIGURE_LIMIT_MAX_IMPORT_BYTES] = offsetof(ProxyLimits, max_import_bytes),
                [CONFIGURE_LIMIT_MAX_LIST_ENTRIES] = offsetof(ProxyLimits, max_list_entries),
                [CONFIGURE_LIMIT_MAX_WALK_ENTRIES] = offsetof(ProxyLimits, max_walk_entries),
                [CONFIGURE_LIMIT_MAX_GREP_MATCHES] = offsetof(ProxyLimits, max_grep_matches),
                [CONFIGURE_LIMIT_MAX_GREP_FILE_BYTES] = offsetof(ProxyLimits, max_grep_file_bytes),
                [CONFIGURE_LIMIT_COMMAND_TIMEOUT_SECONDS] = offsetof(ProxyLimits, default_command_timeout),
                [CONFIGURE_LIMIT_MAX_COMMAND_TIMEOUT_SECONDS] = offsetof(ProxyLimits, max_command_timeout),
                [CONFIGURE_LIMIT_MAX_PROCESSES] = offsetof(ProxyLimits, rlimit_nproc),
                [CONFIGURE_LIMIT_MAX_OPEN_FILES] = offsetof(ProxyLimits, rlimit_nofile),
                [CONFIGURE_LIMIT_MAX_FILE_SIZE_BYTES] = offsetof(ProxyLimits, rlimit_fsize),
                [CONFIGURE_LIMIT_MAX_ADDRESS_SPACE_BYTES] = offsetof(ProxyLimits, rlimit_as),
                [CONFIGURE_LIMIT_MAX_CONCURRENT_COMMANDS] = offsetof(ProxyLimits, max_concurrent_jobs),
        };
        for (ConfigureLimit k = 0; k < _CONFIGURE_LIMIT_MAX; k++) {
                if (c->limits[k] == 0)
                        continue;
                uint64_t v = c->limits[k];
                if (k == CONFIGURE_LIMIT_COMMAND_TIMEOUT_SECONDS ||
                    k == CONFIGURE_LIMIT_MAX_COMMAND_TIMEOUT_SECONDS)
                        v *= USEC_PER_SEC; /* stored in usec */
                memcpy((uint8_t *) l + offset[k], &v, sizeof v);
        }
        if (l->max_command_timeout < l->default_command_timeout)
                l->default_command_timeout = l->max_command_timeout;
}

/* A restored guest's kernel CRNG is the snapshotted guest's: mix the node's fresh seed into the
 * pool and force a reseed (RNDRESEEDCRNG: the base key is re-derived from the pool and every
 * per-CPU key is dropped), so randomness after this point is not predictable from the
 * snapshot or from a sibling's. A write alone credits no entropy, it only adds to the pool.
 * Only in a guest (--guest-system): a host's random pool is the host's.
 * Returns true when the reseed happened; non-logging (the callers say what failed). */
static bool entropy_reseed(const Proxy *p, const Configure *c) {
        if (!c->have_seed || !p->guest_system)
                return false;
        _cleanup_close_ int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || loop_write(fd, c->entropy_seed, sizeof c->entropy_seed) < 0)
                return false;
        return ioctl(fd, RNDRESEEDCRNG) >= 0;
}

/* Set the wall clock to the node's (approval expiry compares tokens with it; a restored guest's
 * clock stopped at its snapshot). A clock already within a second of it is left alone. Only in
 * a guest (--guest-system, which the guest init passes): a proxy on the host (the local
 * driver, tests) shares the host's clock and must never set it, whatever a configure says.
 * Returns true when the clock is right now; non-logging. */
static bool wall_clock_sync(const Proxy *p, usec_t want) {
        if (want == 0)
                return false;
        usec_t now = now_usec(CLOCK_REALTIME);
        if ((now > want ? now - want : want - now) <= USEC_PER_SEC)
                return true;
        if (!p->guest_system)
                return false;
        struct timespec ts = { .tv_sec = (time_t) (want / USEC_PER_SEC),
                               .tv_nsec = (long) ((want % USEC_PER_SEC) * 1000) };
        return clock_settime(CLOCK_REALTIME, &ts) >= 0;
}

/* policy_sha256 attests the policy only. configure_sha256 covers everything else configure
 * decided, in canonical JSON (sorted keys, compact): the policy digest, pod id, the time left
 * as sent, effective limits and costs, env, dns_allow, the approver key and the network, so
 * the node can record and later prove the whole configuration a pod ran under. The wall clock
 * and the entropy seed are left out (they differ on every boot; the seed is not for logs). */
static void configure_digest(const ProxyConfig *cfg, const Configure *c, char ret[static 65]) {
        const ProxyLimits *l = &cfg->limits;
        json_t *limits = json_pack(
                "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                "max_read_bytes",
                (json_int_t) l->max_read_bytes,
                "max_file_bytes",
                (json_int_t) l->max_file_bytes,
                "max_output_bytes",
                (json_int_t) l->max_output_bytes,
                "max_import_bytes",
                (json_int_t) l->max_import_bytes,
                "max_list_entries",
                (json_int_t) l->max_list_entries,
                "max_walk_entries",
                (json_int_t) l->max_walk_entries,
                "max_grep_matches",
                (json_int_t) l->max_grep_matches,
                "max_grep_file_bytes",
                (json_int_t) l->max_grep_file_bytes,
                "command_timeout_usec",
                (json_int_t) l->default_command_timeout,
                "max_command_timeout_usec",
                (json_int_t) l->max_command_timeout,
                "max_processes",
                (json_int_t) l->rlimit_nproc,
                "max_open_files",
                (json_int_t) l->rlimit_nofile,
                "max_file_size_bytes",
                (json_int_t) l->rlimit_fsize,
                "max_address_space_bytes",
                (json_int_t) l->rlimit_as,
                "max_concurrent_commands",
                (json_int_t) l->max_concurrent_jobs);
        json_t *env = json_array(), *dns = json_array();
        STRV_FOREACH(e, cfg->env)
                json_array_append_new(env, json_string(*e));
        STRV_FOREACH(d, cfg->dns_allow)
                json_array_append_new(dns, json_string(*d));
        _cleanup_free_ char *keyhex = cfg->have_approver ? hexmem(cfg->approver_key, sizeof cfg->approver_key)
                                                         : NULL;
        json_t *j = json_pack(
                "{s:i, s:s, s:s, s:o, s:o, s:{s:I, s:I}, s:o, s:o, s:o, s:o}",
                "version",
                2,
                "policy_sha256",
                cfg->policy_sha256,
                "pod_id",
                cfg->pod_id,
                "time_remaining_ms",
                c->time_remaining == USEC_INFINITY
                        ? json_null()
                        : json_integer((json_int_t) (c->time_remaining / USEC_PER_MSEC)),
                "limits",
                limits,
                "costs",
                "base_usd_micros",
                (json_int_t) cfg->costs.base_usd_micros,
                "run_usd_micros_per_second",
                (json_int_t) cfg->costs.run_usd_micros_per_second,
                "env",
                env,
                "dns_allow",
                dns,
                "approver_public_key",
                cfg->have_approver ? json_string(keyhex) : json_null(),
                "network",
                c->have_net ? json_pack(
                                      "{s:s,s:s,s:s}",
                                      "address",
                                      c->net.address,
                                      "gateway",
                                      c->net.gateway,
                                      "dns",
                                      c->net.dns)
                            : json_null());
        _cleanup_free_ char *text = json_dump_canonical(j);
        json_decref(j);
        sha256_hex(text ?: "", text ? strlen(text) : 0, ret);
}

/* What configure and reconfigure answer once committed: the digests the node checks, the pod
 * id, the time left and whether approvals are on. */
static json_t *configured_answer(Proxy *p, const Configure *c) {
        usec_t left = time_window_remaining(&p->window);
        char cfg_sha[65];
        configure_digest(&p->cfg, c, cfg_sha);
        return json_pack(
                "{s:s, s:s, s:s, s:o, s:b}",
                "policy_sha256",
                p->cfg.policy_sha256,
                "configure_sha256",
                cfg_sha,
                "pod_id",
                p->cfg.pod_id,
                "deadline_remaining_ms",
                left == USEC_INFINITY ? json_null() : json_integer((json_int_t) (left / USEC_PER_MSEC)),
                "approvals",
                p->cfg.have_approver);
}

/* The pod's NIC as configure's $.network says (docs/node.md "Warm pool"): a cold pod's init
 * configured it from the kernel command line already (nothing changes then); a pod claimed
 * from the warm pool booted with it down and unaddressed; a restored pod has its parent's
 * address. Only in a guest (--guest-system): on a host (the local driver, tests) the NICs,
 * routes and resolver are the host's and a configure never touches them, whatever its
 * $.network says. Returns 0 or -errno with *reterr. */
#define PROXY_NIC_TIMEOUT_USEC (3 * USEC_PER_SEC)
static int network_apply(const Proxy *p, const Configure *c, char **reterr) {
        NetifAddress a;
        bool changed = false;
        int r;

        if (!c->have_net || !p->guest_system)
                return 0;
        r = netif_address_parse(c->net.address, c->net.gateway, c->net.dns, &a);
        if (r < 0) {
                *reterr = xasprintf("$.network: cannot use %s via %s", c->net.address, c->net.gateway);
                return r;
        }
        r = netif_apply(&a, PROXY_NIC_TIMEOUT_USEC, &changed);
        if (r < 0) {
                *reterr = xasprintf("cannot configure the NIC as %s: %s", c->net.address, strerror(-r));
                return r;
        }
        if (changed)
                log_info("NIC configured as %s via %s", c->net.address, c->net.gateway);
        return 0;
}

void op_configure(Request *req) {
        Proxy *p = req->proxy;
        _cleanup_free_ char *err = NULL;
        _cleanup_(configure_freep) Configure *c = NULL;
        BudgetMeter *budget = NULL;
        ApprovalRegistry *approvals = NULL;
        int r;

        if (p->configured) {
                request_fail(
                        req,
                        ERROR_KIND_CONFLICT,
                        "configure: the proxy is already configured (policy %s)",
                        p->cfg.policy_sha256);
                return;
        }
        r = configure_from_json(req->args, &c, &err);
        if (r < 0) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "configure: %s", err);
                return;
        }

        /* Everything decided into cfg; nothing in p changes before the commit below. */
        ProxyConfig cfg = p->cfg; /* the defaults */
        limits_apply(&cfg.limits, c);
        if (c->have_base_cost)
                cfg.costs.base_usd_micros = c->base_cost_usd_micros;
        if (c->have_run_cost)
                cfg.costs.run_usd_micros_per_second = c->run_cost_usd_micros_per_second;
        cfg.have_approver = c->have_approver;
        memcpy(cfg.approver_key, c->approver_key, sizeof cfg.approver_key);
        (void) policy_sha256(c->policy, cfg.policy_sha256);
        /* The deadline: the time the node says is left, never more than the policy's window. */
        usec_t deadline = NUCLEUS_MIN(c->time_remaining, c->policy->max_duration_usec);
        r = budget_meter_new(
                c->policy->max_usd_micros, c->policy->max_input_tokens, c->policy->max_output_tokens, &budget);
        if (r < 0) {
                request_fail(req, ERROR_KIND_INTERNAL, "configure: cannot create the budget meter");
                return;
        }
        r = approval_registry_new(APPROVAL_REGISTRY_DEFAULT_CAPACITY, &approvals);
        if (r < 0) {
                budget_meter_free(budget);
                request_fail(req, ERROR_KIND_INTERNAL, "configure: cannot create the approval registry");
                return;
        }
        /* The only step with an effect outside the proxy, last before the commit: a NIC that
         * cannot be configured refuses the configure (the node then fails the pod). */
        r = network_apply(p, c, &err);
        if (r < 0) {
                budget_meter_free(budget);
                approval_registry_free(approvals);
                request_fail(req, ERROR_KIND_INTERNAL, "configure: %s", err);
                return;
        }
        cfg.pod_id = TAKE_PTR(c->pod_id);
        cfg.policy = TAKE_PTR(c->policy);
        cfg.env = TAKE_PTR(c->env);
        cfg.dns_allow = TAKE_PTR(c->dns_allow);

        /* Commit. */
        p->cfg = cfg;
        p->budget = budget;
        p->approvals = approvals;
        time_window_start(&p->window, deadline);
        /* A guest restored from the warm pool's snapshot shares its CRNG state and a stale clock
         * with every guest restored from it: reseed and set the clock as reconfigure does (a
         * booted guest gets the same; the node requires both of a restored one). */
        bool reseeded = entropy_reseed(p, c);
        bool clock_set = wall_clock_sync(p, c->wall_clock);
        if (!reseeded || !clock_set)
                log_debug(
                        "configure: CRNG %s, clock %s",
                        reseeded ? "reseeded" : "not reseeded",
                        clock_set ? "set" : "not set");
        p->configured = true;
        log_info("Configured pod %s, policy %s", p->cfg.pod_id, p->cfg.policy_sha256);

        json_t *j = configured_answer(p, c);
        json_object_set_new(j, "crng_reseeded", json_boolean(reseeded));
        json_object_set_new(j, "clock_set", json_boolean(clock_set));
        if (p->cfg.policy->name)
                json_object_set_new(j, "profile", json_string(p->cfg.policy->name));
        request_finish(req, j);
}

/* reconfigure: the handshake of a pod restored from a snapshot of another (docs/snapshot.md).
 * The proxy ran in the parent and is configured; it takes the child's identity, a policy that
 * keeps or tightens the current one (policy_narrows; anything looser is refused and nothing
 * changes), a fresh time window, the node's wall clock, a reseeded CRNG, a new budget meter
 * (the policy's budget is the child's share of the parent's remainder) and no approvals: the
 * parent's pending tokens and registry are dropped. Refused while commands run (a snapshot
 * is taken with none). With network (the parent had a NIC), the NIC gets the child's own
 * address, route and resolver in place of the parent's, the same code as configure's. Limits,
 * costs, env and dns_allow stay the parent's. */
void op_reconfigure(Request *req) {
        Proxy *p = req->proxy;
        _cleanup_free_ char *err = NULL;
        _cleanup_(configure_freep) Configure *c = NULL;
        BudgetMeter *budget = NULL;
        ApprovalRegistry *approvals = NULL;
        const char *why = NULL;
        int r;

        r = reconfigure_from_json(req->args, &c, &err);
        if (r < 0) {
                request_fail(req, ERROR_KIND_INVALID_REQUEST, "reconfigure: %s", err);
                return;
        }
        if (p->n_jobs > 0) {
                request_fail(
                        req,
                        ERROR_KIND_CONFLICT,
                        "reconfigure: %u command(s) still run; a pod is reconfigured only without work in "
                        "flight",
                        p->n_jobs);
                return;
        }
        if (!policy_narrows(p->cfg.policy, c->policy, &why)) {
                request_fail(
                        req,
                        ERROR_KIND_INSUFFICIENT_CAPABILITY,
                        "reconfigure: the new policy is looser than the current one (%s); a restored pod "
                        "can only keep or tighten its policy",
                        why);
                return;
        }
        /* The new meter starts at zero, so its maxima must fit in what is left of the current
         * one: a child's share never exceeds the parent's remainder, and a repeated handshake
         * cannot refill a budget. */
        BudgetSnapshot b;
        budget_meter_snapshot(p->budget, &b);
        uint64_t left_usd = b.max_usd_micros -
                NUCLEUS_MIN(b.max_usd_micros, b.consumed_usd_micros + b.reserved_usd_micros);
        uint64_t left_in = b.max_input_tokens -
                NUCLEUS_MIN(b.max_input_tokens, b.consumed_input_tokens + b.reserved_input_tokens);
        uint64_t left_out = b.max_output_tokens -
                NUCLEUS_MIN(b.max_output_tokens, b.consumed_output_tokens + b.reserved_output_tokens);
        if (c->policy->max_usd_micros > left_usd || c->policy->max_input_tokens > left_in ||
            c->policy->max_output_tokens > left_out) {
                request_fail(
                        req,
                        ERROR_KIND_BUDGET_EXHAUSTED,
                        "reconfigure: the new budget (%llu micro-USD) exceeds what is left of the current "
                        "one (%llu)",
                        (unsigned long long) c->policy->max_usd_micros,
                        (unsigned long long) left_usd);
                return;
        }
        r = budget_meter_new(
                c->policy->max_usd_micros, c->policy->max_input_tokens, c->policy->max_output_tokens, &budget);
        if (r < 0) {
                request_fail(req, ERROR_KIND_INTERNAL, "reconfigure: cannot create the budget meter");
                return;
        }
        r = approval_registry_new(APPROVAL_REGISTRY_DEFAULT_CAPACITY, &approvals);
        if (r < 0) {
                budget_meter_free(budget);
                request_fail(req, ERROR_KIND_INTERNAL, "reconfigure: cannot create the approval registry");
                return;
        }

        /* The child's address before anything is committed: a NIC left with the parent's
         * address refuses the handshake (the node then ends the child). */
        r = network_apply(p, c, &err);
        if (r < 0) {
                budget_meter_free(budget);
                approval_registry_free(approvals);
                request_fail(req, ERROR_KIND_INTERNAL, "reconfigure: %s", err);
                return;
        }

        /* The wall clock first: approval expiry compares tokens with it. */
        bool clock_set = wall_clock_sync(p, c->wall_clock);
        if (!clock_set)
                log_warning("Cannot set the wall clock: %m");
        bool reseeded = entropy_reseed(p, c);
        if (!reseeded)
                log_warning("Cannot reseed the CRNG with the node's seed: %m");

        /* Commit. */
        free(p->cfg.pod_id);
        p->cfg.pod_id = TAKE_PTR(c->pod_id);
        policy_free(p->cfg.policy);
        p->cfg.policy = TAKE_PTR(c->policy);
        (void) policy_sha256(p->cfg.policy, p->cfg.policy_sha256);
        budget_meter_free(p->budget);
        p->budget = budget;
        approval_registry_free(p->approvals);
        p->approvals = approvals;
        STRV_FOREACH(t, p->pending_tokens)
                explicit_bzero_safe(*t, strlen(*t));
        p->pending_tokens = strv_free(p->pending_tokens);
        p->used_nonces = strv_free(p->used_nonces);
        time_window_start(&p->window, NUCLEUS_MIN(c->time_remaining, p->cfg.policy->max_duration_usec));
        log_info("Reconfigured as pod %s, policy %s", p->cfg.pod_id, p->cfg.policy_sha256);

        json_t *j = configured_answer(p, c);
        json_object_set_new(j, "crng_reseeded", json_boolean(reseeded));
        json_object_set_new(j, "clock_set", json_boolean(clock_set));
        request_finish(req, j);
}
