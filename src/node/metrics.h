/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prometheus metrics of the node (text exposition format 0.0.4). Counters are process-wide
 * and thread-safe; label values come from closed sets (known operations, error kinds), never
 * from raw client input, so cardinality stays bounded.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include "time-util.h"

typedef struct Node Node;

void metrics_observe_boot(usec_t d);  /* VMM start → channel connected */
void metrics_observe_ready(usec_t d); /* create → proxy configured */
/* decision: "allow", "deny" or "error"; kind: error kind or NULL. */
void metrics_tool_call(const char *op, const char *decision, const char *kind);
void metrics_approval(const char *result);      /* "accepted", "rejected", "invalid" */
void metrics_approval_queue(const char *event); /* "held", "approved", "refused", "withdrawn" */
void metrics_budget_spent(uint64_t micro_usd);
void metrics_bytes(const char *direction, uint64_t n); /* "upload", "download" */
void metrics_pod_created(void);
void metrics_pod_create_failed(void);
void metrics_auth_failure(const char *detail);
void metrics_audit_error(void);
/* A call refused because its request record could not be written (fail closed). */
void metrics_audit_refused(void);
/* A guest-reported event the node did not record; reason: "rate", "size" or "total". */
void metrics_guest_event_dropped(const char *reason);
/* A DNS query a pod's filter refused: "wildcard_budget", "not_allowed", "type", "malformed". */
void metrics_dns_refused(const char *reason);
/* The warm pool: a create served by a pooled pod (hit) or booted cold (miss: "disabled",
 * "empty", or the shape field that differed); a pooled pod booted (seconds to its proxy's
 * answer); a pooled pod that ended while idle. */
void metrics_pool_claim(bool hit, const char *miss);
void metrics_observe_pool_refill(usec_t d);
void metrics_pool_lost(void);
/* Render everything (pods by state from the table). Caller frees. */
char *metrics_render(Node *n);
