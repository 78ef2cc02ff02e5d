/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's HTTP API (libmicrohttpd, a thread per connection) and the metrics endpoint.
 * Routes and bodies: docs/api.md. Every route but GET /v1/health is signed (DESIGN.md §4).
 */
#pragma once
#include <sys/socket.h>

#include "node.h"

typedef struct ApiServer ApiServer;

/* Listen on addr ("host:port", IPv4 or [IPv6]). Returns 0 and the server, or -errno. */
int api_start(Node *n, const char *addr, ApiServer **ret);
/* Metrics server: GET /metrics only, unauthenticated (bind it to loopback). */
int api_metrics_start(Node *n, const char *addr, ApiServer **ret);
/* Stop accepting, wait for in-flight requests. NULL-safe. */
ApiServer *api_stop(ApiServer *s);
/* Parse "host:port" / "[v6]:port" into a sockaddr (IP literals only). */
int api_parse_listen(const char *addr, struct sockaddr_storage *ret, socklen_t *ret_len);
