/* SPDX-License-Identifier: Apache-2.0 */
/* Headless approvers through a webhook: see cli-webhook.h. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-approvals.h"
#include "cli-webhook.h"
#include "fd-util.h"
#include "escape.h"
#include "json-util.h"
#include "log.h"
#include "secrets.h"
#include "string-util.h"

#define WEBHOOK_MAX_POSTED 1024U
#define WEBHOOK_MAX_NONCES 4096U
#define WEBHOOK_ANSWER_MAX (64U * 1024U)
#define WEBHOOK_TIMEOUT_SEC 10L

typedef struct Posted {
        char id[33];
        char pod[65];
        char digest[65];
} Posted;

struct CliWebhook {
        pthread_mutex_t lock;      /* posted, nonces */
        pthread_mutex_t node_lock; /* one node request at a time (poll and /hooks/decision race) */
        NucleusClient *node;       /* borrowed */
        char *url;
        char *console_url;
        char *secrets_dir;
        uint8_t key[32];
        Posted *posted; /* ring of what we posted (the only approvals a decision may name) */
        size_t n_posted, next_posted;
        char (*nonces)[33]; /* ring of nonces seen */
        size_t n_nonces, next_nonce;
};

void cli_webhook_sign(const uint8_t key[32], const void *body, size_t len, char ret[static 72]) {
        uint8_t mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256(mac, body, len, key);
        memcpy(ret, "sha256=", 7);
        for (size_t i = 0; i < sizeof mac; i++)
                snprintf(ret + 7 + 2 * i, 3, "%02x", mac[i]);
}

/* <secrets_dir>/webhook.key: 64 hex, 0600; created when missing. */
static int load_or_create_key(const char *dir, uint8_t key[32], char **reterr) {
        _cleanup_free_ char *path = xasprintf("%s/webhook.key", dir);
        int r = secret_load_file(path, key, 32, true, reterr);
        if (r != -ENOENT)
                return r;
        free(*reterr);
        *reterr = NULL;
        randombytes_buf(key, 32);
        char hex[66];
        for (size_t i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", key[i]);
        hex[64] = '\n';
        hex[65] = 0;
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || loop_write(fd, hex, 65) < 0) {
                explicit_bzero_safe(hex, sizeof hex);
                *reterr = xasprintf("cannot create the webhook secret %s: %m", path);
                return -errno;
        }
        explicit_bzero_safe(hex, sizeof hex);
        log_info("created the webhook secret %s (give it to the approver service)", path);
        return 0;
}

static const char *config_value(const ClientSettings *s, const char *key) {
        return json_string_value(json_object_get(json_object_get(s->config_json, key), "value"));
}

int cli_webhook_new(
        NucleusClient *node, const ClientSettings *s, const char *console_url, CliWebhook **ret, char **reterr) {
        const char *url = config_value(s, "approvals.webhook");
        int r;

        *ret = NULL;
        if (!url || !*url)
                return 0;
        if (!startswith(url, "http://") && !startswith(url, "https://")) {
                *reterr = xasprintf(
                        "%s: [approvals] webhook must be an http:// or https:// URL", s->config_file);
                return -EINVAL;
        }
        CliWebhook *w = xnew0(CliWebhook, 1);
        pthread_mutex_init(&w->lock, NULL);
        pthread_mutex_init(&w->node_lock, NULL);
        w->node = node;
        w->url = xstrdup(url);
        w->console_url = console_url ? xstrdup(console_url) : NULL;
        w->secrets_dir = xstrdup(s->secrets_dir);
        w->posted = xnew0(Posted, WEBHOOK_MAX_POSTED);
        w->nonces = xcalloc(WEBHOOK_MAX_NONCES, 33);
        r = load_or_create_key(s->secrets_dir, w->key, reterr);
        if (r < 0) {
                cli_webhook_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

CliWebhook *cli_webhook_free(CliWebhook *w) {
        if (!w)
                return NULL;
        explicit_bzero_safe(w->key, sizeof w->key);
        free(w->url);
        free(w->console_url);
        free(w->secrets_dir);
        free(w->posted);
        free(w->nonces);
        pthread_mutex_destroy(&w->lock);
        pthread_mutex_destroy(&w->node_lock);
        free(w);
        return NULL;
}

static Posted *find_posted_locked(CliWebhook *w, const char *id) {
        for (size_t i = 0; i < w->n_posted; i++)
                if (streq(w->posted[i].id, id))
                        return &w->posted[i];
        return NULL;
}

typedef struct Answer {
        char *data;
        size_t n;
} Answer;

static size_t on_answer(char *p, size_t size, size_t nmemb, void *ud) {
        Answer *a = ud;
        size_t n = size * nmemb;
        if (a->n + n > WEBHOOK_ANSWER_MAX)
                return 0;
        a->data = xrealloc(a->data, a->n + n + 1);
        memcpy(a->data + a->n, p, n);
        a->n += n;
        a->data[a->n] = 0;
        return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
        char **sig = ud;
        size_t n = size * nmemb, h = strlen(CLI_WEBHOOK_SIGNATURE_HEADER);
        if (n > h + 1 && strncasecmp(p, CLI_WEBHOOK_SIGNATURE_HEADER, h) == 0 && p[h] == ':') {
                const char *v = p + h + 1;
                while (*v == ' ')
                        v++;
                size_t len = strcspn(v, "\r\n");
                free(*sig);
                *sig = xstrndup(v, len);
        }
        return n;
}

static void post_one(CliWebhook *w, const json_t *a) {
        const char *id = json_string_value(json_object_get(a, "id"));
        const char *pod = json_string_value(json_object_get(a, "pod"));
        const char *digest = json_string_value(json_object_get(a, "digest"));
        char nonce[33], sig[72];
        uint8_t rnd[16];

        if (!id || !pod || !digest || strlen(id) != 32 || strlen(pod) > 64 || strlen(digest) != 64)
                return;
        randombytes_buf(rnd, sizeof rnd);
        for (size_t i = 0; i < sizeof rnd; i++)
                snprintf(nonce + 2 * i, 3, "%02x", rnd[i]);
        _cleanup_free_ char *link = w->console_url ? xasprintf("%s/#approval=%s", w->console_url, id) : NULL;
        _cleanup_json_ json_t *doc = json_pack(
                "{s:s,s:s,s:s,s:s,s:o,s:s,s:o,s:s,s:I,s:o}",
                "type",
                "nucleus.approval.pending",
                "id",
                id,
                "pod",
                pod,
                "operation",
                json_string_value(json_object_get(a, "operation")) ?: "",
                "tool",
                json_incref(json_object_get(a, "tool")) ?: json_null(),
                "digest",
                digest,
                "expires",
                json_incref(json_object_get(a, "expires")) ?: json_null(),
                "nonce",
                nonce,
                "timestamp",
                (json_int_t) time(NULL),
                "console_url",
                link ? json_string(link) : json_null());
        _cleanup_free_ char *body = doc ? json_dump_canonical(doc) : NULL;
        if (!body)
                return;
        cli_webhook_sign(w->key, body, strlen(body), sig);

        pthread_mutex_lock(&w->lock);
        Posted *p = &w->posted[w->next_posted];
        snprintf(p->id, sizeof p->id, "%s", id);
        snprintf(p->pod, sizeof p->pod, "%s", pod);
        snprintf(p->digest, sizeof p->digest, "%s", digest);
        w->next_posted = (w->next_posted + 1) % WEBHOOK_MAX_POSTED;
        w->n_posted = NUCLEUS_MIN(w->n_posted + 1, (size_t) WEBHOOK_MAX_POSTED);
        pthread_mutex_unlock(&w->lock);

        CURL *curl = curl_easy_init();
        if (!curl)
                return;
        struct curl_slist *hdr = NULL;
        _cleanup_free_ char *sig_hdr = xasprintf("%s: %s", CLI_WEBHOOK_SIGNATURE_HEADER, sig);
        _cleanup_free_ char *answer_sig = NULL;
        Answer ans = {};
        long status = 0;
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        hdr = curl_slist_append(hdr, sig_hdr);
        curl_easy_setopt(curl, CURLOPT_URL, w->url);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, WEBHOOK_TIMEOUT_SEC);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_answer);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &ans);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &answer_sig);
        CURLcode cr = curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hdr);
        curl_easy_cleanup(curl);
        if (cr != CURLE_OK || status < 200 || status > 299) {
                log_warning(
                        "webhook approver: posting approval %s failed (%s, HTTP %ld)",
                        id,
                        curl_easy_strerror(cr),
                        status);
                free(ans.data);
                return;
        }
        /* An answer that carries a signed decision is applied at once; an empty one means the
         * decision comes later to /hooks/decision. */
        if (ans.n > 0 && answer_sig) {
                _cleanup_free_ char *err = NULL;
                if (cli_webhook_accept_decision(w, ans.data, ans.n, answer_sig, &err) < 0)
                        log_warning("webhook approver: decision in the answer refused: %s", err ?: "?");
        }
        free(ans.data);
}

void cli_webhook_poll(CliWebhook *w) {
        _cleanup_client_error_ ClientError e = {};
        _cleanup_json_ json_t *res = NULL;
        size_t i;
        json_t *a;

        pthread_mutex_lock(&w->node_lock);
        int r = cli_approvals_list(w->node, &res, &e);
        pthread_mutex_unlock(&w->node_lock);
        if (r < 0)
                return;
        json_array_foreach(json_object_get(res, "approvals"), i, a) {
                const char *id = json_string_value(json_object_get(a, "id"));
                if (!id)
                        continue;
                pthread_mutex_lock(&w->lock);
                bool seen = find_posted_locked(w, id) != NULL;
                pthread_mutex_unlock(&w->lock);
                if (!seen)
                        post_one(w, a);
        }
}

static bool hex_ok(const char *s, size_t n) {
        return s && strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

int cli_webhook_accept_decision(
        CliWebhook *w, const char *body, size_t len, const char *signature, char **reterr) {
        char want[72];
        json_error_t jerr;

        cli_webhook_sign(w->key, body, len, want);
        if (!signature || strlen(signature) != 71 || !memeq_consttime(signature, want, 71)) {
                *reterr = xstrdup("bad or missing " CLI_WEBHOOK_SIGNATURE_HEADER);
                return -EPERM;
        }
        _cleanup_json_ json_t *d = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        const char *id = json_string_value(json_object_get(d, "id"));
        const char *digest = json_string_value(json_object_get(d, "digest"));
        const char *decision = json_string_value(json_object_get(d, "decision"));
        const char *nonce = json_string_value(json_object_get(d, "nonce"));
        const char *reason = json_string_value(json_object_get(d, "reason"));
        json_t *ts = json_object_get(d, "timestamp");
        CliApprovalDecision dec = cli_approval_decision_from_string(decision);
        if (!json_is_object(d) || !hex_ok(id, 32) || !hex_ok(digest, 64) || !hex_ok(nonce, 32) ||
            !json_is_integer(ts) || (dec != CLI_APPROVAL_ONCE && dec != CLI_APPROVAL_REFUSE) ||
            (reason && strlen(reason) > 200)) {
                *reterr = xstrdup("malformed decision: {id, pod, digest, decision: once|refuse, nonce, "
                                  "timestamp, reason?}");
                return -EINVAL;
        }
        int64_t now = (int64_t) time(NULL), t = json_integer_value(ts);
        if (t < now - CLI_WEBHOOK_MAX_SKEW_SEC || t > now + CLI_WEBHOOK_MAX_SKEW_SEC) {
                *reterr = xstrdup("decision timestamp outside the allowed skew");
                return -ETIME;
        }
        pthread_mutex_lock(&w->lock);
        bool replay = false;
        for (size_t i = 0; i < w->n_nonces && !replay; i++)
                replay = streq(w->nonces[i], nonce);
        Posted *p = replay ? NULL : find_posted_locked(w, id);
        Posted copy = p ? *p : (Posted){};
        if (!replay) {
                snprintf(w->nonces[w->next_nonce], 33, "%s", nonce);
                w->next_nonce = (w->next_nonce + 1) % WEBHOOK_MAX_NONCES;
                w->n_nonces = NUCLEUS_MIN(w->n_nonces + 1, (size_t) WEBHOOK_MAX_NONCES);
        }
        pthread_mutex_unlock(&w->lock);
        if (replay) {
                *reterr = xstrdup("decision nonce already used");
                return -EALREADY;
        }
        if (!p || !memeq_consttime(copy.digest, digest, 64)) {
                *reterr = xstrdup("the decision names no approval this approver posted with that digest");
                return -ENOENT;
        }
        _cleanup_json_ json_t *pending = NULL;
        pthread_mutex_lock(&w->node_lock);
        int r = cli_approvals_find(w->node, id, &pending, reterr);
        if (r >= 0)
                r = cli_approval_decide(w->node, w->secrets_dir, pending, digest, dec, reason, NULL, reterr);
        pthread_mutex_unlock(&w->node_lock);
        if (r >= 0)
                log_info(
                        "webhook approver: approval %s %s",
                        id,
                        dec == CLI_APPROVAL_REFUSE ? "refused" : "approved once");
        return r;
}
