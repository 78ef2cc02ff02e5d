/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The web console's HTTP server (docs/console.md), served by the CLI process with
 * libmicrohttpd, on 127.0.0.1 by default.
 *
 * Access: the URL printed at start carries a one-time token; the first GET with it answers
 * with an HttpOnly, SameSite=Strict session cookie and the token is spent. Without the cookie
 * every page and API answers 403. The Host header must name the listening address (or
 * localhost / [::1] with its port): a DNS-rebinding page gets 403. State-changing requests
 * (POST) also need Origin equal to the console's own origin and the X-Nucleus-Console header,
 * which no cross-origin form can send. Every answer carries a Content-Security-Policy without
 * inline script and frame-ancestors 'none'.
 *
 * Everything shown is agent-controlled: the server makes it visible (string_make_visible)
 * and the page places it with textContent only.
 *
 * With ui = false only /hooks/decision is served (`nucleus approvals serve`).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cli-webhook.h"
#include "client.h"
#include "macro.h"

typedef struct ConsoleServer ConsoleServer;

typedef struct ConsoleOptions {
        const char *listen;      /* "127.0.0.1:0" picks a free port */
        const char *secrets_dir; /* approver key, audit.pub */
        const char *node_url;    /* shown on the page */
        bool ui;                 /* serve the pages and /api (false: hooks only) */
} ConsoleOptions;

/* Starts the server. Returns 0, or a negative errno with *reterr. node is borrowed. */
int console_server_start(const ConsoleOptions *o, NucleusClient *node, ConsoleServer **ret, char **reterr);
/* The base URL (http://HOST:PORT) and the one-time login URL (base + "/?token=..."). */
const char *console_server_url(const ConsoleServer *s);
const char *console_server_login_url(const ConsoleServer *s);
/* Attach a webhook approver whose decisions arrive at /hooks/decision (borrowed). */
void console_server_set_webhook(ConsoleServer *s, CliWebhook *w);
ConsoleServer *console_server_stop(ConsoleServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ConsoleServer *, console_server_stop);
