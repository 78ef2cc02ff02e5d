/* SPDX-License-Identifier: Apache-2.0 */
/* jansson helpers; see json-util.h. Input text is untrusted. */
#include <errno.h>
#include <stdio.h>

#include "alloc-util.h"
#include "json-util.h"

int json_parse_strict(const char *text, size_t n, size_t max, json_t **ret, char **reterr) {
        json_error_t err;
        if (n > max) {
                if (reterr)
                        *reterr = xasprintf("document is %zu bytes, over the limit of %zu", n, max);
                return -EFBIG;
        }
        json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, &err);
        if (!j) {
                if (reterr)
                        *reterr = xasprintf("line %d, column %d: %s", err.line, err.column, err.text);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

char *json_dump_canonical(const json_t *j) {
        char *s = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
        if (!s)
                oom_abort();
        return s;
}
