/* SPDX-License-Identifier: Apache-2.0 */
/* Check results for doctor: printed as they come in text mode, collected for JSON. */
#include <stdarg.h>
#include <stdio.h>

#include "alloc-util.h"
#include "cli-check.h"
#include "string-util.h"

static const char *const check_status_table[_CHECK_STATUS_MAX] = {
        [CHECK_OK] = "OK",
        [CHECK_WARN] = "WARN",
        [CHECK_ERR] = "ERR",
};
const char *check_status_to_string(CheckStatus s) {
        if ((int) s < 0 || s >= _CHECK_STATUS_MAX)
                return NULL;
        return check_status_table[s];
}

void check_list_init(CheckList *l, OutputMode mode) {
        *l = (CheckList){ .mode = mode, .items = json_array() };
}

void check_list_done(CheckList *l) {
        json_decref(l->items);
        l->items = NULL;
}

void check_add(CheckList *l, CheckStatus s, const char *name, const char *fix, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *raw = xvasprintf(fmt, ap);
        va_end(ap);
        _cleanup_free_ char *msg = string_make_visible(raw);

        switch (s) {
        case CHECK_OK:
                l->n_ok++;
                break;
        case CHECK_WARN:
                l->n_warn++;
                break;
        case CHECK_ERR:
        default:
                l->n_err++;
                break;
        }
        if (l->mode == OUTPUT_JSON) {
                json_t *o = json_pack(
                        "{s:s, s:s, s:s}", "status", check_status_to_string(s), "name", name, "message", msg);
                if (fix)
                        json_object_set_new(o, "fix", json_string(fix));
                json_array_append_new(l->items, o);
                return;
        }
        printf("[%s] %s: %s\n", check_status_to_string(s), name, msg);
        if (fix && s != CHECK_OK)
                printf("       fix: %s\n", fix);
        fflush(stdout);
}
