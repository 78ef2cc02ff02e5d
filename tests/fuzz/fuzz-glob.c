/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the glob matcher: input is "<pattern>\n<text>" (the text may hold further newlines). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "glob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *s = (const char *) data;
        if (size > 2 * GLOB_MAX_LEN)
                return 0;
        const char *nl = memchr(s, '\n', size);
        size_t plen = nl ? (size_t) (nl - s) : size;
        const char *text = nl ? nl + 1 : "";
        size_t tlen = nl ? size - plen - 1 : 0;
        bool m = glob_match_n(s, plen, text, tlen);
        /* invariants: "**" matches everything; a pattern without wildcards matches only itself */
        if (tlen <= GLOB_MAX_LEN && !glob_match_n("**", 2, text, tlen))
                abort();
        if (plen <= GLOB_MAX_LEN && tlen <= GLOB_MAX_LEN && !memchr(s, '*', plen) && !memchr(s, '?', plen) &&
            m != (plen == tlen && memcmp(s, text, plen) == 0))
                abort();
        return 0;
}
