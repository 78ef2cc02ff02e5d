/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Background lease renewal (client-lease.h). Trusts its caller; the node's answers go through
 * client_call_json, which authenticates them.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "alloc-util.h"
#include "client-lease.h"
#include "log.h"
#include "string-util.h"

struct ClientLease {
        NucleusClient *client; /* our own clone */
        char *path;            /* /v1/pods/ID/lease */
        usec_t interval;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* CLOCK_MONOTONIC */
        bool stop;           /* under lock */
        bool lost;           /* under lock */
};

static void *lease_thread(void *arg) {
        ClientLease *l = arg;
        for (;;) {
                _cleanup_client_error_ ClientError err = {};
                int r = client_call_json(l->client, "POST", l->path, NULL, NULL, &err);
                pthread_mutex_lock(&l->lock);
                if (r == -EREMOTEIO && (err.status == 404 || err.status == 409)) {
                        l->lost = true;
                        pthread_mutex_unlock(&l->lock);
                        log_debug("lease %s: %s; no more renewals", l->path, err.message ?: "gone");
                        return NULL;
                }
                if (r < 0)
                        log_debug(
                                "lease %s: renewal failed (%s); retrying",
                                l->path,
                                err.message ?: strerror(-r));
                usec_t until = now_usec(CLOCK_MONOTONIC) + l->interval;
                struct timespec ts = { .tv_sec = (time_t) (until / USEC_PER_SEC),
                                       .tv_nsec = (long) (until % USEC_PER_SEC) * 1000 };
                while (!l->stop && pthread_cond_timedwait(&l->cond, &l->lock, &ts) != ETIMEDOUT)
                        ;
                bool stop = l->stop;
                pthread_mutex_unlock(&l->lock);
                if (stop)
                        return NULL;
        }
}

int client_lease_start(NucleusClient *c, const char *pod, usec_t interval, ClientLease **ret) {
        if (isempty(pod) || strlen(pod) > 128 ||
            strspn(pod, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(pod))
                return -EINVAL;
        ClientLease *l = xnew0(ClientLease, 1);
        l->client = client_clone(c);
        l->path = xasprintf("/v1/pods/%s/lease", pod);
        l->interval = interval > 0 ? interval : USEC_PER_SEC;
        pthread_mutex_init(&l->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&l->cond, &ca);
        pthread_condattr_destroy(&ca);
        int r = -pthread_create(&l->thread, NULL, lease_thread, l);
        if (r < 0) {
                pthread_cond_destroy(&l->cond);
                pthread_mutex_destroy(&l->lock);
                client_free(l->client);
                free(l->path);
                free(l);
                return r;
        }
        *ret = l;
        return 0;
}

bool client_lease_lost(ClientLease *l) {
        pthread_mutex_lock(&l->lock);
        bool lost = l->lost;
        pthread_mutex_unlock(&l->lock);
        return lost;
}

ClientLease *client_lease_stop(ClientLease *l) {
        if (!l)
                return NULL;
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_signal(&l->cond);
        pthread_mutex_unlock(&l->lock);
        (void) pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        client_free(l->client);
        free(l->path);
        free(l);
        return NULL;
}
