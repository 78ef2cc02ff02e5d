/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging to stderr (or a file descriptor chosen at startup). Library code logs at debug
 * only; programs log once and return: `return log_error_errno(r, "Failed to open %s: %m", p);`
 * %m prints strerror of the error passed (not of the current errno).
 */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

/* Levels follow syslog: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG. */
void log_set_max_level(int level);
int log_get_max_level(void);
/* Program name printed as prefix ("nucleus-node: "). Not copied: pass a static string. */
void log_set_prefix(const char *prefix);
/* Destination fd (default 2). The fd is not owned. */
void log_set_fd(int fd);
/* Parse "err|warning|notice|info|debug"; -EINVAL otherwise. */
int log_level_from_string(const char *s);
/* The last message this thread logged at LOG_ERR (or more severe), as printed but without
 * the prefix; "" when none. For a program that must also say it elsewhere (a JSON document).
 * Valid until this thread logs the next error. */
const char *log_last_error(void);

/* Logs if level <= max level. error is a positive or negative errno (0: none) used for %m.
 * Returns -abs(error) (or 0 when error is 0) so callers can `return log_..._errno()`. */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...)
        _printf_(6, 7);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_full(level, ...) ((void) log_full_errno((level), 0, __VA_ARGS__))

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_notice_errno(e, ...) log_full_errno(LOG_NOTICE, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

/* Out-of-memory style fatal message then abort (programmer error or OOM only). */
#define log_oom() (log_error("Out of memory."), -ENOMEM)
