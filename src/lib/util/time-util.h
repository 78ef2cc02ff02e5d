/* SPDX-License-Identifier: Apache-2.0 */
/* Clock helpers. usec_t is microseconds; USEC_INFINITY means "never". */
#pragma once

#include <stdint.h>
#include <time.h>

typedef uint64_t usec_t;
#define USEC_INFINITY ((usec_t) UINT64_MAX)
#define USEC_PER_SEC ((usec_t) 1000000ULL)
#define USEC_PER_MSEC ((usec_t) 1000ULL)
#define NSEC_PER_USEC ((uint64_t) 1000ULL)

/* Current time of clock (CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME) in usec. */
usec_t now_usec(clockid_t clock);
/* usec -> milliseconds for poll/epoll timeouts, capped to INT32_MAX; -1 for infinity. */
int usec_to_timeout_ms(usec_t usec);
/* RFC 3339 UTC with milliseconds ("2026-11-29T20:00:00.123Z") into buf of >= 32 bytes. */
char *format_timestamp_rfc3339(char buf[static 32], usec_t realtime_usec);
