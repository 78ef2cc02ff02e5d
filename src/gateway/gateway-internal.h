/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the files of nucleus-gateway share (docs/gateway.md): the gateway's state (main.c
 * loads it from the configuration and serves), the forwarded call run by a libcurl worker
 * and settled on the budget (gateway-call.c), and the HTTP side that checks, reserves and
 * forwards each request (gateway-http.c). The wire formats are in gateway-wire.c.
 */
#pragma once

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "budget.h"
#include "client.h"
#include "gateway-wire.h"
#include "sse.h"

#define GW_MAX_CONFIG (1024U * 1024U)
#define GW_MAX_REQUEST (32U * 1024U * 1024U) /* request body from the agent */
#define GW_MAX_BUFFERED (8U * 1024U * 1024U) /* answer bytes not yet taken by the agent */
#define GW_MAX_WHOLE (16U * 1024U * 1024U)   /* whole (non-streamed) answer kept for its usage */
#define GW_MAX_EVENT (4U * 1024U * 1024U)    /* one SSE event, for usage accounting */
#define GW_MAX_CONNECTIONS 64U
#define GW_DEFAULT_MAX_OUTPUT 32000U

typedef struct Price {
        uint64_t in, out; /* micro-USD per million tokens */
} Price;

typedef struct Gateway {
        bool anthropic;
        char *upstream; /* provider base, without a trailing "/v1" */
        char *api_key;  /* erased on exit */
        char *token;    /* the per-run token agents present */
        json_t *prices; /* {"model": [in, out]} */
        uint64_t max_output;
        uint64_t deadline; /* CLOCK_MONOTONIC usec; 0: none */
        uint64_t connect_timeout_ms, idle_timeout_ms;
        BudgetMeter *meter;
        int audit_fd;        /* -1: none */
        NucleusClient *node; /* NULL: no node; else signs with the run credential of pod */
        char *pod;

        pthread_mutex_t lock; /* everything below, the node client, audit writes */
        pthread_cond_t idle;  /* signalled when a worker ends */
        bool exhausted;
        struct Call *active[GW_MAX_CONNECTIONS]; /* calls whose worker runs */
} Gateway;

extern Gateway gw;

/* ---- the forwarded call, shared by the connection thread and the curl worker ---- */

typedef struct Call {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned refs;

        /* request */
        GatewayFormat format;
        char *model;
        char *url;
        char *body;
        struct curl_slist *hdrs;
        bool stream;
        BudgetReservation reservation;
        char node_resv[33]; /* the node's reservation id ("" when none) */
        Price price;
        uint64_t started;

        /* answer, under lock */
        char *buf;
        size_t buf_len, buf_off;
        bool headers_done, done, failed, client_gone;
        long status;
        char *content_type, *retry_after, *request_id;

        /* worker only */
        CURL *curl;
        SseParser *sse;
        GatewayUsage usage;
        char *whole;
        size_t whole_len;
        bool is_sse;
        uint64_t last_activity;
        curl_off_t last_dlnow;
} Call;

/* ---- the forwarded call (gateway-call.c) ---- */

/* One audit line (the time added), under the gateway's lock. */
void gw_audit_write(json_t *rec);
void gw_call_unref(Call *c);
int gw_on_usage_event(const char *event, const char *data, size_t n, void *userdata);
size_t gw_header_cb(char *line, size_t size, size_t nmemb, void *userdata);
size_t gw_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
int gw_progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
/* The libcurl worker thread of a call: performs it, settles it, then ends its reference. */
void *gw_worker(void *userdata);
bool gw_active_add(Call *c);
/* The pod's budget on the node (docs/api.md "Budget reserve and settle"), with the run
 * credential. reserve: 0 and the reservation id, -EDQUOT (budget spent), -ETIME (deadline),
 * other <0 (the node could not be asked: callers refuse the call, fail closed). settle: the
 * actual cost (0 releases); *ret_exhausted when the pod's budget is now spent; <0 when the
 * node could not be told. */
int gw_node_reserve(uint64_t usd_micros, char ret_id[static 33]);
int gw_node_settle(const char *id, uint64_t usd_micros, uint64_t in, uint64_t out, bool *ret_exhausted);
/* At shutdown: every call still running is abandoned (its transfer aborts within a second,
 * through the progress callback) and settles as cut, at its reservation, charged to the pod
 * like any other. Waits at most `wait_usec` for the workers. */
void gw_abandon_active(uint64_t wait_usec);
/* The reply body's reader (libmicrohttpd): drains the call's buffer; freeing it tells the
 * worker the agent is gone. */
ssize_t gw_reader_cb(void *cls, uint64_t pos, char *out, size_t max);
void gw_reader_free(void *cls);

/* ---- requests (gateway-http.c) ---- */

enum MHD_Result gw_on_request(
        void *cls,
        struct MHD_Connection *conn,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_data_size,
        void **con_cls);
void gw_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe);
