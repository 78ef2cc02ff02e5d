/* SPDX-License-Identifier: Apache-2.0 */
/* stderr logger with %m bound to an explicit error; see log.h. Thread-safe per line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "escape.h"
#include "fd-util.h"
#include "log.h"

static int log_max_level = LOG_INFO;
static const char *log_prefix = NULL;
static int log_fd = STDERR_FILENO;
static _Thread_local char log_last_error_msg[2048];

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

void log_set_prefix(const char *prefix) {
        log_prefix = prefix;
}

void log_set_fd(int fd) {
        log_fd = fd;
}

const char *log_last_error(void) {
        return log_last_error_msg;
}

int log_level_from_string(const char *s) {
        static const struct {
                const char *name;
                int level;
        } t[] = {
                { "err", LOG_ERR },      { "error", LOG_ERR },     { "warning", LOG_WARNING },
                { "warn", LOG_WARNING }, { "notice", LOG_NOTICE }, { "info", LOG_INFO },
                { "debug", LOG_DEBUG },
        };
        for (size_t i = 0; s && i < ELEMENTSOF(t); i++)
                if (strcmp(s, t[i].name) == 0)
                        return t[i].level;
        return -EINVAL;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...) {
        int e = error < 0 ? -error : error;
        char msg[2048], out[2304];

        if (level > log_max_level)
                return -e;

        PROTECT_ERRNO;
        errno = e; /* %m in fmt refers to the error passed in */
        va_list ap;
        va_start(ap, fmt);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
#pragma GCC diagnostic pop
        va_end(ap);

        /* Log lines stay one line each and show no hidden character raw (escape.h); callers
         * have escaped the agent's text already, so a backslash stays itself. */
        _cleanup_free_ char *vis = escape_text(msg, strlen(msg), ESCAPE_KEEP_BACKSLASH);
        if (level <= LOG_ERR)
                (void) snprintf(log_last_error_msg, sizeof(log_last_error_msg), "%s", vis ?: msg);

        int n;
        if (log_max_level >= LOG_DEBUG)
                n = snprintf(
                        out,
                        sizeof(out),
                        "%s%s%s (%s:%d %s)\n",
                        log_prefix ?: "",
                        log_prefix ? ": " : "",
                        vis,
                        file,
                        line,
                        func);
        else
                n = snprintf(out, sizeof(out), "%s%s%s\n", log_prefix ?: "", log_prefix ? ": " : "", vis);
        if (n > 0)
                (void) loop_write(log_fd, out, NUCLEUS_MIN((size_t) n, sizeof(out) - 1));
        return -e;
}
