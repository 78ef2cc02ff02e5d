/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lease renewal for a pod created with spec.lease (docs/api.md "Leases"): a background thread
 * POSTs /v1/pods/ID/lease every `interval`, so the pod lives exactly as long as this client
 * does. When the client dies (SIGKILL, a closed laptop) the renewals stop and the node ends
 * the pod after its grace period. Renewals are short signed requests, not a held-open stream:
 * connections are a capped resource on the node.
 */
#pragma once

#include <stdbool.h>

#include "client.h"
#include "time-util.h"

typedef struct ClientLease ClientLease;

/*
 * client_lease_start:
 *   Arguments: c: the client (cloned: c may be freed before the lease is stopped); pod: the
 *     pod id; interval: time between renewals (callers use a third of the grace period).
 *   Returns: 0 and *ret, -EINVAL for an unusable pod id, or -errno when the thread cannot start.
 *   Notes: the first renewal is sent at once. A 404 or 409 answer (the pod is gone or has
 *     ended) stops the renewals and sets client_lease_lost(); transport errors are retried.
 */
int client_lease_start(NucleusClient *c, const char *pod, usec_t interval, ClientLease **ret);

/* True once the node said the pod is gone or no longer leased. */
bool client_lease_lost(ClientLease *l);

/* Stop renewing and join the thread (a renewal in progress finishes first). Accepts NULL. */
ClientLease *client_lease_stop(ClientLease *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(ClientLease *, client_lease_stop);
