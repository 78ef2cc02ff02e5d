/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pod boot: on its own thread per pod, network, cgroup, VMM start, channel connect and the
 * proxy's configure; any failure ends the pod with the reason.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cgroup.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "net.h"
#include "node-util.h"
#include "pod.h"
#include "nodespec.h"
#include "string-util.h"
#include "pod-internal.h"

static char *pod_vmm_exit_reason(Pod *p, usec_t wait) {
        usec_t end = now_usec(CLOCK_MONOTONIC) + wait;
        int fd = -EBADF;

        pthread_mutex_lock(&p->node->lock);
        if (p->vm && vmm_pid(p->vm)->fd >= 0)
                fd = fcntl(vmm_pid(p->vm)->fd, F_DUPFD_CLOEXEC, 3);
        pthread_mutex_unlock(&p->node->lock);
        if (fd < 0)
                return NULL;
        for (;;) {
                siginfo_t si = {};
                int w = waitid(P_PIDFD, (id_t) fd, &si, WEXITED | WNOHANG | WNOWAIT);
                if (w < 0)
                        break; /* already reaped: someone else is ending the pod */
                if (si.si_pid != 0) {
                        safe_close(fd);
                        return si.si_code == CLD_EXITED
                                ? xasprintf("VMM exited unexpectedly with status %d", si.si_status)
                                : xasprintf("VMM killed by signal %s", sigabbrev_np(si.si_status) ?: "?");
                }
                if (now_usec(CLOCK_MONOTONIC) >= end)
                        break;
                (void) usleep(20 * 1000);
        }
        safe_close(fd);
        return NULL;
}

void pod_on_close(void *userdata, int error) {
        Pod *p = userdata;
        bool live;

        if (pod_pool_channel_lost(p))
                return; /* a pooled pod: the pool replaces it */

        /* Runs on the channel's reader thread, which holds no reference: the pod may be in
         * pod_free (n_ref 0, joining this very thread). Only a pod with references that is
         * still running is touched, and the termination job gets its reference under the
         * same lock. */
        pthread_mutex_lock(&p->node->lock);
        live = p->n_ref > 0 && p->state == POD_RUNNING && !p->terminating;
        if (live)
                p->n_ref++;
        pthread_mutex_unlock(&p->node->lock);
        if (!live)
                return;
        /* A dead VMM closes the channel too: name the cause, not the symptom. */
        _cleanup_free_ char *why = pod_vmm_exit_reason(p, 500 * USEC_PER_MSEC);
        if (!why)
                why = error < 0 ? xasprintf("channel to the guest broken: %s", strerror(-error))
                                : xstrdup("the guest closed the channel");
        pod_terminate_async_take(p, POD_FAILED, why, "internal");
}

/* The configure message for p, built from what the node keeps: the spec's Policy and values,
 * the time left until the pod's deadline (so the guest enforces the same deadline the node
 * reports), the wall clock, a fresh entropy seed and the pod's network. */
static Configure *pod_configure_message(Pod *p) {
        Configure *c = nodespec_configure(
                p->spec, p->id, p->node->have_approver_pub ? p->node->approver_pub : NULL);
        usec_t now = now_usec(CLOCK_MONOTONIC);
        /* At least 1 ms: a pod whose deadline passes during configure ends by the supervisor. */
        c->time_remaining = p->deadline_mono > now + USEC_PER_MSEC ? p->deadline_mono - now : USEC_PER_MSEC;
        c->wall_clock = now_usec(CLOCK_REALTIME);
        if (getrandom(c->entropy_seed, sizeof c->entropy_seed, 0) == (ssize_t) sizeof c->entropy_seed)
                c->have_seed = true;
        pod_configure_net(p, c);
        return c;
}

void pod_configure_net(Pod *p, Configure *c) {
        if (!p->net || net_pod_info(p->net)->parked)
                return;
        const NetPodInfo *ni = net_pod_info(p->net);
        c->have_net = true;
        c->net.address = xasprintf("%s/%u", ni->guest_addr, ni->guest_prefix);
        c->net.gateway = xstrdup(ni->gateway);
        c->net.dns = xstrdup(ni->dns);
}

/* The channel's liveness watcher: nothing came from the guest for the bound (a stopped or
 * paused VM, a hung proxy loop). Same reference rules as pod_on_close. */
void pod_on_dead(void *userdata, usec_t silent) {
        Pod *p = userdata;
        bool live;

        pthread_mutex_lock(&p->node->lock);
        live = p->n_ref > 0 && p->state == POD_RUNNING && !p->terminating;
        if (live)
                p->n_ref++;
        pthread_mutex_unlock(&p->node->lock);
        if (!live)
                return;
        _cleanup_free_ char *why = xasprintf(
                "the guest stopped answering: nothing on its channel for %" PRIu64 " s (liveness timeout %u "
                "s)",
                (uint64_t) (silent / USEC_PER_SEC),
                p->node->config.liveness_sec);
        pod_log(p, LOG_WARNING, "%s", why);
        pod_terminate_async_take(p, POD_FAILED, why, "guest_unresponsive");
}

int pod_configure(Pod *p, char **reterr) {
        _cleanup_(configure_freep) Configure *msg = pod_configure_message(p);
        _cleanup_json_ json_t *args = configure_to_json(msg);
        ChannelReply reply = {};
        char want[65];
        int r;

        if (policy_sha256(p->spec->policy, want) < 0) {
                *reterr = xstrdup("configure: cannot compute the policy's digest");
                return -EIO;
        }
        r = channel_call(p->channel, "configure", args, 0, NULL, 0, 60 * USEC_PER_SEC, 0, &reply);
        if (r < 0) {
                *reterr = xasprintf("configure: no answer from the proxy: %s", strerror(-r));
                return r;
        }
        const char *err = json_string_value(json_object_get(reply.response, "error"));
        const char *sha = json_string_value(json_object_get(reply.response, "policy_sha256"));
        /* configure_sha256 attests the whole configuration; an older proxy may not send it,
         * but one that does must send a well-formed digest. */
        json_t *cfg_v = json_object_get(reply.response, "configure_sha256");
        const char *cfg_sha = hex64_or_null(cfg_v);
        if (!err && cfg_v && !cfg_sha)
                err = "malformed configure_sha256 in the answer";
        if (err || !sha || strlen(sha) != 64) {
                *reterr = xasprintf(
                        "configure refused by the proxy: %s (%s)",
                        err ?: "no policy_sha256 in the answer",
                        json_string_value(json_object_get(reply.response, "kind")) ?: "?");
                channel_reply_done(&reply);
                return -EPROTO;
        }
        /* The proxy enforces what it parsed: it must be exactly the policy the node sent. */
        if (!streq(sha, want)) {
                *reterr = xasprintf(
                        "configure: the proxy reports policy %s, not the policy the node sent (%s); "
                        "refusing a pod that would run under another policy",
                        sha,
                        want);
                channel_reply_done(&reply);
                return -EPROTO;
        }
        /* A guest restored from the pool's snapshot has the CRNG state and the stopped clock of
         * every guest restored from it: it runs nothing until both are fresh. */
        if (p->pool_restored &&
            (!json_is_true(json_object_get(reply.response, "crng_reseeded")) ||
             !json_is_true(json_object_get(reply.response, "clock_set")))) {
                *reterr = xasprintf(
                        "configure: the guest restored from the pool's snapshot could not %s",
                        json_is_true(json_object_get(reply.response, "crng_reseeded")) ? "set its clock"
                                                                                       : "reseed its CRNG");
                channel_reply_done(&reply);
                return -EPROTO;
        }
        pthread_mutex_lock(&p->node->lock);
        p->policy_sha256 = xstrdup(sha);
        p->configure_sha256 = cfg_sha ? xstrdup(cfg_sha) : NULL;
        pthread_mutex_unlock(&p->node->lock);
        {
                /* args_sha256: the proxy's configure_sha256 when it sent one (else the digest of
                 * the arguments the node sent); result_sha256: policy_sha256. */
                AuditEvent ev = { .actor = "node",
                                  .op = "configure",
                                  .decision = "allow",
                                  .args = cfg_sha ? NULL : args,
                                  .args_sha256 = cfg_sha,
                                  .result_sha256 = sha };
                pod_audit(p, &ev);
        }
        channel_reply_done(&reply);
        return 0;
}

void pod_now_running(Pod *p) {
        pod_set_state(p, POD_RUNNING);
        /* From here on the guest must keep answering: pings outside its tool work. */
        int r = channel_liveness_start(
                p->channel, (usec_t) p->node->config.liveness_sec * USEC_PER_SEC, pod_on_dead);
        if (r < 0 && !(r == -EINVAL && p->claimed)) /* a claimed pod is watched since the pool */
                log_warning_errno(r, "pod %s: cannot watch the guest's liveness: %m", p->id);
        metrics_observe_ready(now_usec(CLOCK_MONOTONIC) - p->created_mono);
        pod_audit_lifecycle(p, "running", vmm_accel(p->vm), NULL);
        pod_log(p,
                LOG_INFO,
                "running (driver %s, accel %s, ready in %.1fs)",
                vmm_driver_to_string(p->driver),
                vmm_accel(p->vm),
                (double) (now_usec(CLOCK_MONOTONIC) - p->created_mono) / 1e6);
}

bool pod_stopping(Pod *p) {
        bool r;
        pthread_mutex_lock(&p->node->lock);
        r = p->terminating;
        pthread_mutex_unlock(&p->node->lock);
        return r;
}

int pod_vmm_start(Node *n, Pod *p, VmmDriver driver, const VmmLaunch *l, Vmm **ret, char **reterr) {
        Vmm *vm = NULL;
        if (pod_stopping(p))
                return 1;
        int r = vmm_start(driver, l, &vm, reterr);
        if (r < 0)
                return r;
        pthread_mutex_lock(&n->lock);
        p->vm = vm;
        bool stop_now = p->terminating;
        pthread_mutex_unlock(&n->lock);
        node_wake(n);
        if (stop_now) {
                /* Terminated while the VMM started: pod_terminate may have run before p->vm was
                 * set, so this VMM is ended here. */
                (void) vmm_stop(vm);
                return 1;
        }
        *ret = vm;
        return 0;
}

/* The pod's DNS filter refused a query (runs on the filter's thread): count it; audit the first
 * ones (the filter stops asking for detail after a few, so the log cannot be flooded). */
static void pod_dns_refused(
        void *userdata, const char *reason, const char *name, const char *entry, unsigned limit, bool detail) {
        Pod *p = userdata;
        metrics_dns_refused(reason);
        if (!detail)
                return;
        _cleanup_json_ json_t *d = json_pack(
                "{s:s,s:s,s:s?,s:i}", "reason", reason, "name", name, "entry", entry, "wildcard_names", (int) limit);
        AuditEvent ev = {
                .actor = "node", .op = "dns_query", .decision = "deny", .kind = "network_denied", .detail = d
        };
        pod_audit(p, &ev);
}

void pod_net_config(Node *n, Pod *p, NetConfig *ret) {
        NetConfig nc = NET_CONFIG_NULL;
        nc.state_dir = n->config.net_state_dir;
        nc.pool = n->config.net_pool;
        nc.dns_upstream = n->config.net_dns_upstream;
        nc.dns_wildcard_names = n->config.net_dns_wildcard_names;
        nc.dns_event = pod_dns_refused;
        nc.dns_event_userdata = p;
        if (n->vmm_uid != 0) {
                nc.tap_uid = n->vmm_uid;
                nc.tap_gid = n->vmm_gid;
        }
        *ret = nc;
}

int pod_net_policy(Pod *p, NetPolicy **ret, char **reterr) {
        _cleanup_(net_policy_freep) NetPolicy *netpol = NULL;
        int r;

        /* Setup hosts need a NIC even without a network section: everything else stays dropped,
         * and those names open only while the setup step runs (api-setup.c). */
        if (!p->spec->has_network && strv_length(p->spec->setup_hosts) == 0) {
                *ret = NULL;
                return 0;
        }
        r = net_policy_from_strv(p->spec->allow, p->spec->deny, p->spec->dns_allow, &netpol, reterr);
        if (r < 0)
                return r;
        netpol->dns_wildcard_names = p->spec->dns_wildcard_names;
        r = net_policy_set_setup_hosts(netpol, p->spec->setup_hosts, reterr);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(netpol);
        return 1;
}

int pod_net_build(Pod *p, const NetPolicy *netpol, char **reterr) {
        Node *n = p->node;
        NetConfig nc;
        NetPod *np = NULL;
        pod_net_config(n, p, &nc);
        int r = net_pod_setup(&nc, p->id, netpol, &np, reterr);
        if (r < 0)
                return r;
        pthread_mutex_lock(&p->net_lock);
        pthread_mutex_lock(&n->lock);
        bool late = p->terminating;
        pthread_mutex_unlock(&n->lock);
        if (late) /* terminated while the network was being built: nobody else tears it down */
                (void) net_pod_teardown(np);
        else
                p->net = np;
        pthread_mutex_unlock(&p->net_lock);
        return late ? 1 : 0;
}

void pod_launch_net(Pod *p, VmmLaunch *l) {
        if (!p->net)
                return;
        const NetPodInfo *ni = net_pod_info(p->net);
        l->net_cmdline = ni->cmdline;
        l->netns_path = ni->netns_path;
        l->tap_name = ni->tap;
        l->tap_mac = ni->mac;
        l->net = p->net;
}

void pod_launch_prepare(Node *n, Pod *p, const char *image_dir, VmmLaunch *ret) {
        if (n->cgroup_root && p->driver != VMM_DRIVER_LOCAL) {
                int r = cgroup_pod_create(n->cgroup_root, p->id, p->memory_mib, p->vcpus, 512, &p->cgroup_dir);
                if (r < 0)
                        log_warning_errno(
                                r, "pod %s: cannot create its cgroup, running without limits: %m", p->id);
        }
        *ret = (VmmLaunch){
                .pod_id = p->id,
                .pod_dir = p->dir,
                .image_dir = image_dir,
                .accel = n->accel_in_use ?: n->config.accel,
                .vcpus = p->vcpus,
                .memory_mib = p->memory_mib,
                .tcg_tb_mib = n->config.tcg_tb_mib,
                .ksm = n->config.ksm,
                .scratch_mib = p->scratch_mib,
                .cgroup_dir = p->cgroup_dir,
                .proxy_path = n->config.proxy_path,
                .firecracker_path = n->config.firecracker_path,
                .jailer_path = n->config.jailer_path,
                .run_uid = n->vmm_uid,
                .run_gid = n->vmm_gid,
        };
}

int pod_channel_publish(Node *n, Pod *p, int fd, Channel **ret, char **reterr) {
        Channel *ch = NULL;
        int r = channel_new(fd, pod_on_event, pod_on_close, p, &ch);
        if (r < 0) {
                *reterr = xasprintf("cannot start the channel reader: %s", strerror(-r));
                return r;
        }
        pthread_mutex_lock(&n->lock);
        p->channel = ch;
        bool stop_now = p->terminating;
        pthread_mutex_unlock(&n->lock);
        *ret = ch;
        return stop_now;
}

void *pod_boot_thread(void *userdata) {
        Pod *p = userdata;
        Node *n = p->node;
        _cleanup_free_ char *err = NULL, *image_dir = NULL;
        _cleanup_(net_policy_freep) NetPolicy *netpol = NULL;
        usec_t t0 = now_usec(CLOCK_MONOTONIC), t_boot;
        VmmLaunch l = {};
        Vmm *vm = NULL;
        int r, fd = -EBADF;

        pod_set_state(p, POD_BOOTING);
        pod_audit_lifecycle(p, "booting", NULL, NULL);
        pod_log(p,
                LOG_DEBUG,
                "booting (driver %s, %u vCPU, %" PRIu64 " MiB, deadline in %" PRIu64 " s)",
                vmm_driver_to_string(p->driver),
                p->vcpus,
                p->memory_mib,
                (uint64_t) (p->timeout / USEC_PER_SEC));
        if (p->weak)
                pod_log(p,
                        LOG_WARNING,
                        "driver local: the proxy runs on the host in bubblewrap; this is weaker isolation "
                        "than a microVM");

        r = pod_net_policy(p, &netpol, &err);
        if (r < 0)
                goto fail;
        if (netpol && p->driver != VMM_DRIVER_LOCAL) {
                r = pod_net_build(p, netpol, &err);
                if (r < 0)
                        goto fail;
                if (r > 0)
                        goto out;
        }

        image_dir = nodespec_image_dir(p->spec, n->config.images_dir);
        pod_launch_prepare(n, p, image_dir, &l);
        pod_launch_net(p, &l);
        if (!p->net && netpol)
                l.net_cmdline = "nucleus.net=requested";
        r = pod_vmm_start(n, p, p->driver, &l, &vm, &err);
        if (r < 0)
                goto fail;
        if (r > 0)
                goto out;

        r = vmm_connect_channel(vm, (usec_t) n->config.boot_timeout_sec * USEC_PER_SEC, &fd, &err);
        if (r < 0)
                goto fail;
        t_boot = now_usec(CLOCK_MONOTONIC);
        metrics_observe_boot(t_boot - t0);

        Channel *ch = NULL;
        r = pod_channel_publish(n, p, fd, &ch, &err);
        if (r < 0)
                goto fail;
        if (r > 0) {
                channel_shutdown(ch);
                goto out;
        }

        pod_set_state(p, POD_CONFIGURING);
        r = pod_configure(p, &err);
        if (r < 0)
                goto fail;

        pod_now_running(p);
        goto out;

fail:
        if (!pod_stopping(p)) {
                metrics_pod_create_failed();
                pod_log(p, LOG_ERR, "failed to start: %s", err ?: strerror(r < 0 ? -r : EIO));
                pod_terminate(p, POD_FAILED, err ?: "failed to start", "internal");
        }
out:
        pod_unref(p);
        return NULL;
}
