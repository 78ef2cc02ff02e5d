/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the parsers of the spec's network section: allow/deny entries, dns_allow names and the
 * name matcher web_fetch shares. Input: untrusted bytes, split at the first NUL into an entry
 * text and a host name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "net-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 1024)
                return 0;
        char *s = xmalloc(size + 2);
        memcpy(s, data, size);
        s[size] = 0;
        s[size + 1] = 0;
        const char *host = s + strlen(s) + 1;
        if (host > s + size)
                host = s + size;

        NetEntry e;
        char *err = NULL;
        if (net_entry_parse(s, &e, &err) == 0) {
                char buf[64];
                net_entry_format_addr(&e, buf, sizeof(buf));
                NetEntry again;
                /* the formatted address must parse back to the same entry (without port/proto) */
                if (net_entry_parse(buf, &again, NULL) < 0 || again.family != e.family ||
                    again.prefix != e.prefix || memcmp(again.addr, e.addr, 16) != 0)
                        abort();
        }
        free(err);
        err = NULL;

        char *norm = NULL;
        if (net_dns_name_normalize(s, &norm, &err) == 0) {
                char *l[] = { norm, NULL };
                (void) net_dns_name_allowed(l, host);
                free(norm);
        }
        free(err);
        free(s);
        return 0;
}
