/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Metrics registry: fixed arrays indexed by closed label sets, one mutex, rendered on scrape.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "message.h"
#include "metrics.h"
#include "nucleus-config.h"
#include "pod.h"
#include "string-util.h"

static const char *const metric_ops[] = {
        "read",      "write",   "edit",   "list",   "glob",   "grep",   "run",
        "web_fetch", "approve", "charge", "status", "import", "export", "other",
};
#define N_OPS ELEMENTSOF(metric_ops)
static const char *const metric_decisions[] = { "allow", "deny", "error" };
#define N_DEC ELEMENTSOF(metric_decisions)
static const char *const metric_guest_drop[] = { "rate", "size", "total" };
static const char *const metric_dns_refused[] = { "wildcard_budget", "not_allowed", "type", "malformed" };
static const char *const metric_pool_miss[] = { "disabled", "empty",  "image",   "driver",
                                                "vcpus",    "memory", "scratch", "network" };
static const char *const metric_approvals[] = { "accepted", "rejected", "invalid" };
static const char *const metric_approval_queue[] = { "held", "approved", "refused", "withdrawn" };
static const char *const metric_auth[] = {
        "missing_header", "bad_timestamp", "skew",       "bad_nonce",        "bad_actor",   "bad_request",
        "bad_signature",  "replay",        "cache_full", "content_mismatch", "unknown_key", "other",
};

/* Histogram buckets in seconds (TCG boots take tens of seconds). */
static const double metric_buckets[] = { 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300 };
#define N_BUCKETS ELEMENTSOF(metric_buckets)

typedef struct Histogram {
        uint64_t buckets[N_BUCKETS];
        uint64_t count;
        double sum;
} Histogram;

static struct {
        pthread_mutex_t lock;
        uint64_t tool_calls[N_OPS][N_DEC];
        uint64_t denials[_ERROR_KIND_MAX];
        uint64_t approvals[ELEMENTSOF(metric_approvals)];
        uint64_t approval_queue[ELEMENTSOF(metric_approval_queue)];
        uint64_t auth_failures[ELEMENTSOF(metric_auth)];
        uint64_t budget_micro;
        uint64_t bytes_up, bytes_down;
        uint64_t pods_created, pods_create_failed;
        uint64_t audit_errors;
        uint64_t audit_refused;
        uint64_t guest_dropped[ELEMENTSOF(metric_guest_drop)];
        uint64_t dns_refused[ELEMENTSOF(metric_dns_refused)];
        Histogram boot, ready, pool_refill;
        uint64_t pool_hits, pool_misses[ELEMENTSOF(metric_pool_miss)], pool_lost;
} M = { .lock = PTHREAD_MUTEX_INITIALIZER };

static size_t index_of(const char *const *table, size_t n, const char *s, size_t fallback) {
        for (size_t i = 0; i < n; i++)
                if (streq_ptr(table[i], s))
                        return i;
        return fallback;
}

static void hist_observe(Histogram *h, usec_t d) {
        double s = (double) d / 1e6;
        pthread_mutex_lock(&M.lock);
        for (size_t i = 0; i < N_BUCKETS; i++)
                if (s <= metric_buckets[i])
                        h->buckets[i]++;
        h->count++;
        h->sum += s;
        pthread_mutex_unlock(&M.lock);
}

void metrics_observe_boot(usec_t d) {
        hist_observe(&M.boot, d);
}

void metrics_observe_ready(usec_t d) {
        hist_observe(&M.ready, d);
}

void metrics_tool_call(const char *op, const char *decision, const char *kind) {
        size_t o = index_of(metric_ops, N_OPS, op, N_OPS - 1);
        size_t d = index_of(metric_decisions, N_DEC, decision, N_DEC - 1);
        ErrorKind k = kind ? error_kind_from_string(kind) : _ERROR_KIND_INVALID;
        pthread_mutex_lock(&M.lock);
        M.tool_calls[o][d]++;
        if (streq_ptr(decision, "deny") && (int) k >= 0)
                M.denials[k]++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_approval(const char *result) {
        size_t i = index_of(metric_approvals, ELEMENTSOF(metric_approvals), result, 2);
        pthread_mutex_lock(&M.lock);
        M.approvals[i]++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_approval_queue(const char *event) {
        size_t i = index_of(metric_approval_queue, ELEMENTSOF(metric_approval_queue), event, 0);
        pthread_mutex_lock(&M.lock);
        M.approval_queue[i]++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_budget_spent(uint64_t micro_usd) {
        pthread_mutex_lock(&M.lock);
        M.budget_micro += micro_usd;
        pthread_mutex_unlock(&M.lock);
}

void metrics_bytes(const char *direction, uint64_t n) {
        pthread_mutex_lock(&M.lock);
        if (streq(direction, "upload"))
                M.bytes_up += n;
        else
                M.bytes_down += n;
        pthread_mutex_unlock(&M.lock);
}

void metrics_pod_created(void) {
        pthread_mutex_lock(&M.lock);
        M.pods_created++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_pod_create_failed(void) {
        pthread_mutex_lock(&M.lock);
        M.pods_create_failed++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_auth_failure(const char *detail) {
        size_t i = index_of(metric_auth, ELEMENTSOF(metric_auth), detail, ELEMENTSOF(metric_auth) - 1);
        pthread_mutex_lock(&M.lock);
        M.auth_failures[i]++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_audit_refused(void) {
        pthread_mutex_lock(&M.lock);
        M.audit_refused++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_audit_error(void) {
        pthread_mutex_lock(&M.lock);
        M.audit_errors++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_guest_event_dropped(const char *reason) {
        size_t i = index_of(metric_guest_drop, ELEMENTSOF(metric_guest_drop), reason, 0);
        pthread_mutex_lock(&M.lock);
        M.guest_dropped[i]++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_dns_refused(const char *reason) {
        size_t i = index_of(
                metric_dns_refused, ELEMENTSOF(metric_dns_refused), reason, ELEMENTSOF(metric_dns_refused) - 1);
        pthread_mutex_lock(&M.lock);
        M.dns_refused[i]++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_pool_claim(bool hit, const char *miss) {
        size_t i = index_of(metric_pool_miss, ELEMENTSOF(metric_pool_miss), miss, 1);
        pthread_mutex_lock(&M.lock);
        if (hit)
                M.pool_hits++;
        else
                M.pool_misses[i]++;
        pthread_mutex_unlock(&M.lock);
}

void metrics_observe_pool_refill(usec_t d) {
        hist_observe(&M.pool_refill, d);
}

void metrics_pool_lost(void) {
        pthread_mutex_lock(&M.lock);
        M.pool_lost++;
        pthread_mutex_unlock(&M.lock);
}

static void render_hist(FILE *f, const char *name, const char *help, const Histogram *h) {
        fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
        for (size_t i = 0; i < N_BUCKETS; i++)
                fprintf(f,
                        "%s_bucket{le=\"%g\"} %llu\n",
                        name,
                        metric_buckets[i],
                        (unsigned long long) h->buckets[i]);
        fprintf(f,
                "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
                name,
                (unsigned long long) h->count,
                name,
                h->sum,
                name,
                (unsigned long long) h->count);
}

char *metrics_render(Node *n) {
        unsigned by_state[_POD_STATE_MAX] = {};
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                oom_abort();
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_pods; i++)
                by_state[n->pods[i]->state]++;
        pthread_mutex_unlock(&n->lock);

        fprintf(f, "# HELP nucleus_build_info Build information.\n# TYPE nucleus_build_info gauge\n");
        fprintf(f, "nucleus_build_info{version=\"%s\"} 1\n", NUCLEUS_VERSION);
        fprintf(f,
                "# HELP nucleus_node_driver_info Default VMM driver and acceleration in use.\n"
                "# TYPE nucleus_node_driver_info gauge\n");
        fprintf(f,
                "nucleus_node_driver_info{driver=\"%s\",accel=\"%s\"} 1\n",
                vmm_driver_to_string(n->config.driver),
                n->accel_in_use ?: "none");
        {
                /* Open descriptors against the limit the node raised at start (docs/node.md). */
                unsigned open_fds = 0;
                DIR *d = opendir("/proc/self/fd");
                for (struct dirent *de; d && (de = readdir(d));)
                        if (de->d_name[0] != '.')
                                open_fds++;
                if (d) {
                        closedir(d);
                        open_fds--; /* the directory's own fd */
                }
                fprintf(f,
                        "# HELP nucleus_node_open_fds Descriptors the node holds.\n"
                        "# TYPE nucleus_node_open_fds gauge\nnucleus_node_open_fds %u\n"
                        "# HELP nucleus_node_open_files_limit RLIMIT_NOFILE soft limit (raised to the hard "
                        "limit at start).\n"
                        "# TYPE nucleus_node_open_files_limit gauge\nnucleus_node_open_files_limit %llu\n",
                        open_fds,
                        (unsigned long long) n->nofile_soft);
        }
        fprintf(f, "# HELP nucleus_pods Pods by state.\n# TYPE nucleus_pods gauge\n");
        for (int s = 0; s < _POD_STATE_MAX; s++)
                fprintf(f, "nucleus_pods{state=\"%s\"} %u\n", pod_state_to_string((PodState) s), by_state[s]);

        pthread_mutex_lock(&M.lock);
        fprintf(f,
                "# HELP nucleus_pods_created_total Pods accepted by POST /v1/pods.\n"
                "# TYPE nucleus_pods_created_total counter\nnucleus_pods_created_total %llu\n",
                (unsigned long long) M.pods_created);
        fprintf(f,
                "# HELP nucleus_pod_create_failures_total Pods that failed before running.\n"
                "# TYPE nucleus_pod_create_failures_total counter\nnucleus_pod_create_failures_total %llu\n",
                (unsigned long long) M.pods_create_failed);
        render_hist(f, "nucleus_pod_boot_seconds", "VMM start to channel connected.", &M.boot);
        render_hist(f, "nucleus_pod_ready_seconds", "Pod creation to configured proxy.", &M.ready);
        render_hist(
                f,
                "nucleus_pool_refill_seconds",
                "Warm pool: booting one pooled pod, VMM start to its proxy's first answer.",
                &M.pool_refill);
        fprintf(f,
                "# HELP nucleus_pool_hits_total Creates served by a pooled pod.\n"
                "# TYPE nucleus_pool_hits_total counter\nnucleus_pool_hits_total %llu\n"
                "# HELP nucleus_pool_misses_total Creates booted cold, by reason (disabled: no pool for "
                "the image; empty: none ready; else the shape field that differed).\n"
                "# TYPE nucleus_pool_misses_total counter\n",
                (unsigned long long) M.pool_hits);
        for (size_t i = 0; i < ELEMENTSOF(metric_pool_miss); i++)
                fprintf(f,
                        "nucleus_pool_misses_total{reason=\"%s\"} %llu\n",
                        metric_pool_miss[i],
                        (unsigned long long) M.pool_misses[i]);
        fprintf(f,
                "# HELP nucleus_pool_lost_total Pooled pods that ended while idle (replaced).\n"
                "# TYPE nucleus_pool_lost_total counter\nnucleus_pool_lost_total %llu\n",
                (unsigned long long) M.pool_lost);
        fprintf(f,
                "# HELP nucleus_tool_calls_total Tool calls by operation and decision.\n"
                "# TYPE nucleus_tool_calls_total counter\n");
        for (size_t o = 0; o < N_OPS; o++)
                for (size_t d = 0; d < N_DEC; d++)
                        if (M.tool_calls[o][d])
                                fprintf(f,
                                        "nucleus_tool_calls_total{op=\"%s\",decision=\"%s\"} %llu\n",
                                        metric_ops[o],
                                        metric_decisions[d],
                                        (unsigned long long) M.tool_calls[o][d]);
        fprintf(f,
                "# HELP nucleus_denials_total Denied tool calls by error kind.\n"
                "# TYPE nucleus_denials_total counter\n");
        for (int k = 0; k < _ERROR_KIND_MAX; k++)
                if (M.denials[k])
                        fprintf(f,
                                "nucleus_denials_total{kind=\"%s\"} %llu\n",
                                error_kind_to_string((ErrorKind) k),
                                (unsigned long long) M.denials[k]);
        fprintf(f,
                "# HELP nucleus_approvals_total Approval tokens presented.\n# TYPE nucleus_approvals_total "
                "counter\n");
        for (size_t i = 0; i < ELEMENTSOF(metric_approvals); i++)
                fprintf(f,
                        "nucleus_approvals_total{result=\"%s\"} %llu\n",
                        metric_approvals[i],
                        (unsigned long long) M.approvals[i]);
        fprintf(f,
                "# HELP nucleus_approval_queue_total Pending approvals held, and how they ended.\n"
                "# TYPE nucleus_approval_queue_total counter\n");
        for (size_t i = 0; i < ELEMENTSOF(metric_approval_queue); i++)
                fprintf(f,
                        "nucleus_approval_queue_total{event=\"%s\"} %llu\n",
                        metric_approval_queue[i],
                        (unsigned long long) M.approval_queue[i]);
        fprintf(f,
                "# HELP nucleus_auth_failures_total Rejected API requests by reason.\n"
                "# TYPE nucleus_auth_failures_total counter\n");
        for (size_t i = 0; i < ELEMENTSOF(metric_auth); i++)
                if (M.auth_failures[i])
                        fprintf(f,
                                "nucleus_auth_failures_total{detail=\"%s\"} %llu\n",
                                metric_auth[i],
                                (unsigned long long) M.auth_failures[i]);
        fprintf(f,
                "# HELP nucleus_budget_spent_micro_usd Budget spent as reported by the proxies.\n"
                "# TYPE nucleus_budget_spent_micro_usd counter\nnucleus_budget_spent_micro_usd %llu\n",
                (unsigned long long) M.budget_micro);
        fprintf(f,
                "# HELP nucleus_bytes_total Workspace and patch bytes moved through the API.\n"
                "# TYPE nucleus_bytes_total counter\n");
        fprintf(f,
                "nucleus_bytes_total{direction=\"upload\"} "
                "%llu\nnucleus_bytes_total{direction=\"download\"} %llu\n",
                (unsigned long long) M.bytes_up,
                (unsigned long long) M.bytes_down);
        fprintf(f,
                "# HELP nucleus_audit_errors_total Audit appends that failed.\n"
                "# TYPE nucleus_audit_errors_total counter\nnucleus_audit_errors_total %llu\n",
                (unsigned long long) M.audit_errors);
        fprintf(f,
                "# HELP nucleus_audit_refused_total Calls refused because their request record could "
                "not be written (nothing reached the guest).\n"
                "# TYPE nucleus_audit_refused_total counter\nnucleus_audit_refused_total %llu\n",
                (unsigned long long) M.audit_refused);
        fprintf(f,
                "# HELP nucleus_guest_events_dropped_total Guest-reported events not recorded "
                "(rate, size or per-pod total cap).\n"
                "# TYPE nucleus_guest_events_dropped_total counter\n");
        for (size_t i = 0; i < ELEMENTSOF(metric_guest_drop); i++)
                fprintf(f,
                        "nucleus_guest_events_dropped_total{reason=\"%s\"} %llu\n",
                        metric_guest_drop[i],
                        (unsigned long long) M.guest_dropped[i]);
        fprintf(f,
                "# HELP nucleus_dns_refused_total DNS queries of pods refused by the node's DNS filter "
                "(wildcard_budget: a new name under a wildcard entry whose budget of distinct names is "
                "spent).\n"
                "# TYPE nucleus_dns_refused_total counter\n");
        for (size_t i = 0; i < ELEMENTSOF(metric_dns_refused); i++)
                fprintf(f,
                        "nucleus_dns_refused_total{reason=\"%s\"} %llu\n",
                        metric_dns_refused[i],
                        (unsigned long long) M.dns_refused[i]);
        pthread_mutex_unlock(&M.lock);
        pod_pool_render_metrics(n, f);
        if (fclose(f) != 0)
                oom_abort();
        return buf;
}
