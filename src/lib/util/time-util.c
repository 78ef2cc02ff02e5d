/* SPDX-License-Identifier: Apache-2.0 */
/* Clock helpers; see time-util.h. */
#include <stdio.h>

#include "time-util.h"

usec_t now_usec(clockid_t clock) {
        struct timespec ts;
        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / NSEC_PER_USEC;
}

int usec_to_timeout_ms(usec_t usec) {
        if (usec == USEC_INFINITY)
                return -1;
        usec_t ms = (usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
        return ms > INT32_MAX ? INT32_MAX : (int) ms;
}

char *format_timestamp_rfc3339(char buf[static 32], usec_t realtime_usec) {
        time_t sec = (time_t) (realtime_usec / USEC_PER_SEC);
        struct tm tm;
        gmtime_r(&sec, &tm);
        size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        if (n == 0 || n > 24) {
                buf[0] = 0;
                return buf;
        }
        snprintf(buf + n, 32 - n, ".%03uZ", (unsigned) ((realtime_usec % USEC_PER_SEC) / 1000) % 1000u);
        return buf;
}
