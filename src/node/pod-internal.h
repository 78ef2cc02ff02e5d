/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the pod files share among themselves (pod.c, pod-boot.c, pod-events.c,
 * pod-supervisor.c); the rest of the node uses pod.h only.
 */
#pragma once
#include <jansson.h>
#include <stdbool.h>

#include "pod.h"

static inline bool pod_state_is_final(PodState s) {
        return s == POD_EXITED || s == POD_FAILED;
}

static inline bool pod_state_is_live(PodState s) {
        return !pod_state_is_final(s);
}

/* pod.c */
void pod_free(Pod *p);
/* One line to the daemon's log and to <pod>/node.log. */
_printf_(3, 4) void pod_log(Pod *p, int level, const char *fmt, ...);
void pod_set_state(Pod *p, PodState s);
/* Remove everything in the pod dir except the audit log and the logs. */
void pod_dir_prune(const char *dir);
/* Like pod_terminate_async, consuming a reference the caller already holds. */
void pod_terminate_async_take(Pod *p, PodState final, const char *reason, const char *kind);

/* Apply [pods] keep_ended / keep_ended_seconds (supervisor; at most every 10 s). */
void pod_retention(Node *n);

/* pod-events.c */
void pod_broadcast_locked(Pod *p, const char *event, json_t *data);
void pod_wake_subs_locked(Pod *p);
/* Lifecycle records: op "pod_<event>", decision "info", the detail text hashed as the result. */
void pod_audit_lifecycle(Pod *p, const char *event, const char *detail, const char *kind);
/* Append the guest-event drop report if anything was dropped since the last one (force:
 * regardless of the report interval). */
void pod_guest_drops_report(Pod *p, bool force);
/* Channel callback: one event frame from the guest. */
void pod_on_event(void *userdata, json_t *ev);
/* The string value of v when it is 64 lower-case hex characters, else NULL. */
const char *hex64_or_null(json_t *v);

/* pod-boot.c */
void *pod_boot_thread(void *userdata);
