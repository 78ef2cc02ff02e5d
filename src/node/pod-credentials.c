/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Credentials scoped to one pod (pod.h, docs/api.md "Scoped credentials"). The node mints
 * them on request of a node-key holder and keeps them with the pod's record, in memory only:
 * a restart of the node ends every pod (pod_cleanup_stale), so nothing that could outlive its
 * pod is ever written to disk. A credential is usable while its pod has not ended; the route
 * table's scope column decides which routes it may sign (api-routes.c api_scope_decide).
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "pod-internal.h"
#include "pod.h"
#include "string-util.h"

static const char *const cred_prefix[_POD_CRED_SCOPE_MAX] = {
        [POD_CRED_POD] = "pod-",
        [POD_CRED_RUN] = "run-",
};

bool pod_has_ended(Pod *p) {
        pthread_mutex_lock(&p->node->lock);
        bool ended = p->terminating || !pod_state_is_live(p->state);
        pthread_mutex_unlock(&p->node->lock);
        return ended;
}

int pod_credential_mint(
        Pod *p, PodCredScope scope, char ret_key_id[POD_CRED_KEY_ID_MAX + 1], uint8_t ret_secret[32]) {
        uint8_t rnd[8];
        char rnd_hex[2 * sizeof rnd + 1];
        PodCredential c = { .scope = scope };

        if ((int) scope < 0 || scope >= _POD_CRED_SCOPE_MAX || sodium_init() < 0)
                return -EINVAL;
        randombytes_buf(rnd, sizeof rnd);
        sodium_bin2hex(rnd_hex, sizeof rnd_hex, rnd, sizeof rnd);
        (void) snprintf(c.key_id, sizeof c.key_id, "%s%s-%s", cred_prefix[scope], p->id, rnd_hex);
        randombytes_buf(c.secret, sizeof c.secret);

        pthread_mutex_lock(&p->node->lock);
        int r = 0;
        if (p->terminating || !pod_state_is_live(p->state))
                r = -ESTALE;
        else if (p->n_creds >= POD_CREDENTIALS_MAX)
                r = -ENOSPC;
        else
                p->creds[p->n_creds++] = c;
        pthread_mutex_unlock(&p->node->lock);
        if (r >= 0) {
                memcpy(ret_key_id, c.key_id, sizeof c.key_id);
                memcpy(ret_secret, c.secret, sizeof c.secret);
        }
        explicit_bzero_safe(&c, sizeof c);
        return r;
}

int pod_credential_find(
        Node *n, const char *key_id, Pod **ret_pod, uint8_t ret_secret[32], PodCredScope *ret_scope) {
        /* "pod-" or "run-", the pod id, '-', 16 hex: the pod is found by its id, the credential
         * among the pod's by the whole key id in constant time. */
        size_t len = strnlen(key_id, POD_CRED_KEY_ID_MAX + 1);
        if (len < 4 + 36 + 1 || len > POD_CRED_KEY_ID_MAX || key_id[4 + 36] != '-')
                return -ENOENT;
        char pod_id[37];
        memcpy(pod_id, key_id + 4, 36);
        pod_id[36] = 0;
        _cleanup_(pod_unrefp) Pod *p = pod_find(n, pod_id);
        if (!p)
                return -ENOENT;

        int r = -ENOENT;
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < p->n_creds; i++) {
                const PodCredential *c = &p->creds[i];
                if (strlen(c->key_id) == len && memeq_consttime(c->key_id, key_id, len)) {
                        memcpy(ret_secret, c->secret, sizeof c->secret);
                        *ret_scope = c->scope;
                        r = 0;
                }
        }
        pthread_mutex_unlock(&n->lock);
        if (r < 0)
                return r;
        *ret_pod = TAKE_PTR(p);
        return 0;
}
