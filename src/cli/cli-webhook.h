/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Headless approvers (docs/approvals.md, "Webhook approvers"). With `[approvals] webhook =
 * URL` in config.toml, the console (or `nucleus approvals serve`) posts each new pending
 * approval to URL as JSON signed with HMAC-SHA256 under the webhook secret
 * (<secrets_dir>/webhook.key, created 0600 on first use): id, pod, operation, tool, digest,
 * expiry and a link to the console, never the agent-controlled arguments (they would leave the
 * machine around the pod's egress policy). The approver answers with a signed decision bound
 * to that digest and a fresh nonce, in the POST's response body or later to the console's
 * /hooks/decision (cli_webhook_accept_decision).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "client-settings.h"
#include "client.h"
#include "macro.h"

#define CLI_WEBHOOK_SIGNATURE_HEADER "X-Nucleus-Webhook-Signature" /* "sha256=<hex>" */
#define CLI_WEBHOOK_MAX_SKEW_SEC 60

typedef struct CliWebhook CliWebhook;

/*
 * cli_webhook_new: reads [approvals] webhook from the settings' config. console_url (may be
 * NULL) is the base the posted link points to. Returns 0 and *ret = NULL when no webhook is
 * configured, 0 and a webhook, or a negative errno with *reterr (bad URL, unreadable secret).
 */
int cli_webhook_new(
        NucleusClient *node, const ClientSettings *s, const char *console_url, CliWebhook **ret, char **reterr);
CliWebhook *cli_webhook_free(CliWebhook *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(CliWebhook *, cli_webhook_free);

/* Post every pending approval not posted yet; apply decisions found in the answers. */
void cli_webhook_poll(CliWebhook *w);

/*
 * cli_webhook_accept_decision: verify and apply one signed decision document
 * {"id","pod","digest","decision":"once"|"refuse","reason"?,"nonce","timestamp"}: signature
 * (constant time), timestamp within CLI_WEBHOOK_MAX_SKEW_SEC, a nonce never seen, an approval
 * this process posted with exactly that digest. Returns 0, or a negative errno with *reterr.
 */
int cli_webhook_accept_decision(CliWebhook *w, const char *body, size_t len, const char *signature, char **reterr);

/* HMAC-SHA256 of body under key as "sha256=<64 hex>" (ret: 72 bytes). */
void cli_webhook_sign(const uint8_t key[32], const void *body, size_t len, char ret[static 72]);
