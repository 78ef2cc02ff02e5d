/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The model gateway of a `nucleus run` (docs/gateway.md): started once the pod runs, with the
 * provider key, the run's budget and deadline on its stdin; every agent of the run (the
 * built-in loop, an external agent) talks to it with a per-run token. Stopped, and its audit
 * records collected, when the run ends.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "client-settings.h"
#include "llm.h"
#include "process-util.h"

typedef struct RunGateway {
        PidRef pid;
        char *url;   /* "http://127.0.0.1:PORT" */
        char *token; /* the per-run token agents present; erased on stop */
        char *dir;   /* private temporary directory (audit file) */
        char *audit_path;
} RunGateway;

#define RUN_GATEWAY_NULL ((RunGateway){ .pid = PIDREF_NULL })

typedef struct RunGatewayOptions {
        const LlmConfig *model;       /* provider, upstream base URL, model, key variable */
        uint64_t price_in, price_out; /* micro-USD per Mtok */
        uint64_t max_usd_micros;      /* what is left of the pod's budget */
        uint64_t timeout_sec;         /* the run's deadline from now; 0: none */
        const ClientSettings *node;   /* charge settled costs to this pod */
        const char *pod;
} RunGatewayOptions;

/* Returns 0 with *ret running, or <0 (logged). */
int run_gateway_start(const RunGatewayOptions *o, RunGateway *ret);

/* The base URL an agent of this provider uses (".../v1" for OpenAI-compatible clients). */
char *run_gateway_base_url(const RunGateway *g, LlmProvider provider);

/* Stops the gateway (SIGTERM, then waits) and returns its audit records (new reference,
 * an array, empty when none). Removes its files. Safe on a gateway never started. */
json_t *run_gateway_stop(RunGateway *g);
/* run_gateway_stop() dropping the records, for _cleanup_. */
void run_gateway_stop_and_free_records(RunGateway *g);

/* Totals over audit records: calls forwarded, refused, tokens and cost. */
typedef struct RunGatewayTotals {
        unsigned calls, refused;
        uint64_t input_tokens, output_tokens, cost_micros;
} RunGatewayTotals;
void run_gateway_totals(json_t *records, RunGatewayTotals *ret);
