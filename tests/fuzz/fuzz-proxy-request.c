/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the proxy's request handling end to end: each input is one request frame payload
 * handed to proxy_handle_frame() of a configured proxy over a scratch workspace. Ops that fork
 * or stream (run, import, export, web_fetch) or grow the workspace (write) are renamed to
 * "status" so the fuzzer stays in-process and bounded; everything else (parsing, configure,
 * read/edit/list/glob/grep path handling, approve, charge) runs for real. Answers go nowhere
 * (no peer).
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Proxy *P;

static void handle(const char *json, uint32_t sid) {
        size_t n = strlen(json);
        Frame f = { .type = FRAME_REQUEST,
                    .stream_id = sid,
                    .length = (uint32_t) n,
                    .payload = xmemdup(json, n + 1) };
        proxy_handle_frame(P, &f);
        frame_done(&f);
}

static void cleanup(void) {
        /* Only these two entries can exist: write, run and import never reach the proxy. */
        if (!P)
                return;
        (void) unlinkat(P->workspace_fd, "file.txt", 0);
        (void) unlinkat(P->workspace_fd, "dir", AT_REMOVEDIR);
        (void) rmdir(P->workspace_path);
}

static void setup(void) {
        char ws[] = "/tmp/nucleus-fuzz-ws-XXXXXX";
        if (!mkdtemp(ws))
                abort();
        P = xnew0(Proxy, 1);
        P->conn_fd = -EBADF;
        P->epoll_fd = -EBADF;
        proxy_init_defaults(P);
        P->workspace_path = xstrdup(ws);
        P->workspace_real = realpath(ws, NULL);
        P->workspace_fd = open(ws, O_PATH | O_DIRECTORY | O_CLOEXEC);
        P->agent_uid = P->agent_gid = 65534;
        P->have_proc_fd = access("/proc/self/fd", X_OK) == 0;
        P->agent_home = xstrdup(ws);
        P->state_dir = xstrdup("/nonexistent-nucleus-fuzz-state");
        int fd = openat(P->workspace_fd, "file.txt", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
                (void) !write(fd, "alpha beta\ngamma\n", 17);
                close(fd);
        }
        (void) mkdirat(P->workspace_fd, "dir", 0755);
        handle("{\"op\":\"configure\",\"args\":{\"pod_id\":\"fuzz\",\"profile\":\"fix-issue\","
               "\"approver_public_key\":"
               "\"0000000000000000000000000000000000000000000000000000000000000000\"}}",
               1);
        if (!P->configured)
                abort();
        atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 64 * 1024)
                return 0;
        if (!P)
                setup();
        char *s = xmalloc(size + 1);
        memcpy(s, data, size);
        s[size] = 0;
        static const char *const unsafe[] = {
                "\"run\"", "\"import\"", "\"export\"", "\"web_fetch\"", "\"write\""
        };
        for (size_t i = 0; i < sizeof unsafe / sizeof unsafe[0]; i++)
                for (char *q = strstr(s, unsafe[i]); q; q = strstr(q + 1, unsafe[i]))
                        memcpy(q + 1, "status", 6 < strlen(unsafe[i]) - 2 ? 6 : strlen(unsafe[i]) - 2);
        Frame f = { .type = FRAME_REQUEST, .stream_id = 3, .length = (uint32_t) size, .payload = (uint8_t *) s };
        proxy_handle_frame(P, &f);
        frame_done(&f);
        proxy_jobs_reap_graveyard(P);
        return 0;
}
