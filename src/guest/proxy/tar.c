/* SPDX-License-Identifier: Apache-2.0 */
/* Strict push parser for tar archives (see tar.h). Every byte is untrusted. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "tar.h"

void tar_reader_init(TarReader *t) {
        *t = (TarReader){ .state = TAR_STATE_HEADER };
}

static void clear_overrides(TarReader *t) {
        t->pax_path = mfree(t->pax_path);
        t->pax_link = mfree(t->pax_link);
        t->long_name = mfree(t->long_name);
        t->long_link = mfree(t->long_link);
        t->pax_size_set = false;
}

void tar_reader_done(TarReader *t) {
        clear_overrides(t);
        free(t->ext);
        free(t->cur_path);
        free(t->cur_link);
        tar_reader_init(t);
}

_printf_(2, 3) static int fail(TarReader *t, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = snprintf(t->error, sizeof t->error, "entry %llu: ", (unsigned long long) t->n_entries + 1);
        if (n < 0 || (size_t) n >= sizeof t->error)
                n = 0;
        (void) vsnprintf(t->error + n, sizeof t->error - (size_t) n, fmt, ap);
        va_end(ap);
        t->state = TAR_STATE_FAILED;
        return -EBADMSG;
}

/* Octal field (NUL/space terminated, leading spaces allowed) or GNU base-256. */
static int parse_number(const uint8_t *f, size_t len, uint64_t *ret) {
        if (len > 0 && (f[0] & 0x80)) {
                if (f[0] != 0x80)
                        return -ERANGE; /* negative or too large */
                uint64_t v = 0;
                for (size_t i = 1; i < len; i++) {
                        if (v >> 55)
                                return -ERANGE;
                        v = (v << 8) | f[i];
                }
                *ret = v;
                return 0;
        }
        size_t i = 0;
        while (i < len && f[i] == ' ')
                i++;
        uint64_t v = 0;
        bool digits = false;
        for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
                if (v >> 60)
                        return -ERANGE;
                v = v * 8 + (uint64_t) (f[i] - '0');
                digits = true;
        }
        for (; i < len; i++)
                if (f[i] != ' ' && f[i] != 0)
                        return -EINVAL;
        if (!digits)
                v = 0;
        *ret = v;
        return 0;
}

static char *field_string(const uint8_t *f, size_t len) {
        size_t n = strnlen((const char *) f, len);
        return xstrndup((const char *) f, n);
}

static bool block_is_zero(const uint8_t *b) {
        for (size_t i = 0; i < TAR_BLOCK; i++)
                if (b[i])
                        return false;
        return true;
}

static int check_name(TarReader *t, const char *s, size_t n, const char *what) {
        if (n == 0)
                return fail(t, "empty %s", what);
        if (n > TAR_MAX_PATH)
                return fail(t, "%s longer than %u bytes", what, TAR_MAX_PATH);
        if (memchr(s, 0, n))
                return fail(t, "%s contains a NUL byte", what);
        return 0;
}

/* Parse pax records "LEN key=value\n" strictly. */
static int parse_pax(TarReader *t, const char *p, size_t n) {
        size_t off = 0;
        while (off < n) {
                size_t i = off, len = 0;
                while (i < n && p[i] >= '0' && p[i] <= '9' && i - off < 8)
                        len = len * 10 + (size_t) (p[i++] - '0');
                if (i >= n || p[i] != ' ' || len == 0 || len > n - off || p[off + len - 1] != '\n')
                        return fail(t, "malformed pax record at offset %zu", off);
                const char *kv = p + i + 1, *end = p + off + len - 1;
                const char *eq = memchr(kv, '=', (size_t) (end - kv));
                if (!eq)
                        return fail(t, "pax record without '='");
                size_t klen = (size_t) (eq - kv), vlen = (size_t) (end - eq - 1);
                const char *v = eq + 1;
                if (klen == 4 && memcmp(kv, "path", 4) == 0) {
                        if (check_name(t, v, vlen, "pax path") < 0)
                                return -EBADMSG;
                        free(t->pax_path);
                        t->pax_path = xstrndup(v, vlen);
                } else if (klen == 8 && memcmp(kv, "linkpath", 8) == 0) {
                        if (check_name(t, v, vlen, "pax linkpath") < 0)
                                return -EBADMSG;
                        free(t->pax_link);
                        t->pax_link = xstrndup(v, vlen);
                } else if (klen == 4 && memcmp(kv, "size", 4) == 0) {
                        uint64_t s = 0;
                        if (vlen == 0 || vlen > 19)
                                return fail(t, "bad pax size");
                        for (size_t k = 0; k < vlen; k++) {
                                if (v[k] < '0' || v[k] > '9')
                                        return fail(t, "bad pax size");
                                s = s * 10 + (uint64_t) (v[k] - '0');
                        }
                        t->pax_size = s;
                        t->pax_size_set = true;
                }
                /* Other keys (mtime, uid, uname, xattrs, ...) are ignored on purpose. */
                off += len;
        }
        return 0;
}

static int finish_extended(TarReader *t) {
        int r = 0;
        if (t->ext_type == 'x')
                r = parse_pax(t, t->ext, t->ext_got);
        else {
                /* GNU long name/link: NUL-terminated inside the payload. */
                size_t n = strnlen(t->ext, t->ext_got);
                if (check_name(t, t->ext, n, t->ext_type == 'L' ? "long name" : "long link") < 0)
                        return -EBADMSG;
                char **dst = t->ext_type == 'L' ? &t->long_name : &t->long_link;
                free(*dst);
                *dst = xstrndup(t->ext, n);
        }
        t->ext = mfree(t->ext);
        t->ext_got = 0;
        return r;
}

static uint64_t padding_for(uint64_t size) {
        return (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
}

static int handle_header(TarReader *t, const TarCallbacks *cb, void *ud) {
        const uint8_t *b = t->block;
        uint64_t sum_stored, size, mode;
        int r;

        if (block_is_zero(b)) {
                if (++t->zero_blocks >= 2)
                        t->state = TAR_STATE_END;
                return 0;
        }
        if (t->zero_blocks > 0)
                return fail(t, "data after a zero block");

        if (memcmp(b + 257, "ustar", 5) != 0)
                return fail(t, "not a ustar header (bad magic)");
        if (parse_number(b + 148, 8, &sum_stored) < 0)
                return fail(t, "bad checksum field");
        uint64_t sum = 0;
        for (size_t i = 0; i < TAR_BLOCK; i++)
                sum += (i >= 148 && i < 156) ? ' ' : b[i];
        if (sum != sum_stored)
                return fail(t, "header checksum mismatch");
        if (parse_number(b + 124, 12, &size) < 0)
                return fail(t, "bad size field");
        if (parse_number(b + 100, 8, &mode) < 0)
                return fail(t, "bad mode field");

        char type = (char) b[156];
        if (type == 'x' || type == 'L' || type == 'K') {
                if (size > TAR_MAX_EXTENDED)
                        return fail(
                                t,
                                "extended header of %llu bytes exceeds %u",
                                (unsigned long long) size,
                                TAR_MAX_EXTENDED);
                t->ext_type = type;
                t->ext = xmalloc((size_t) size + 1);
                t->ext_got = 0;
                t->left = size;
                t->padding = padding_for(size);
                t->state = size > 0 ? TAR_STATE_EXTENDED : TAR_STATE_PADDING;
                if (size == 0)
                        return finish_extended(t);
                return 0;
        }
        if (type == 'g') {
                t->left = size;
                t->padding = padding_for(size);
                t->state = TAR_STATE_SKIP;
                return 0;
        }

        TarEntryType et;
        switch (type) {
        case '0':
        case '\0':
        case '7':
                et = TAR_ENTRY_FILE;
                break;
        case '5':
                et = TAR_ENTRY_DIR;
                break;
        case '2':
                et = TAR_ENTRY_SYMLINK;
                break;
        case '1':
                et = TAR_ENTRY_HARDLINK;
                break;
        case '3':
                et = TAR_ENTRY_CHAR;
                break;
        case '4':
                et = TAR_ENTRY_BLOCK;
                break;
        case '6':
                et = TAR_ENTRY_FIFO;
                break;
        default:
                return fail(t, "unsupported entry type '%c'", type >= 0x20 && type < 0x7f ? type : '?');
        }
        if (t->pax_size_set)
                size = t->pax_size;
        if (et != TAR_ENTRY_FILE)
                size = et == TAR_ENTRY_HARDLINK || et == TAR_ENTRY_SYMLINK || et == TAR_ENTRY_DIR ? 0 : size;

        /* Name: pax path > GNU long name > prefix/name. */
        free(t->cur_path);
        free(t->cur_link);
        t->cur_link = NULL;
        if (t->pax_path)
                t->cur_path = xstrdup(t->pax_path);
        else if (t->long_name)
                t->cur_path = xstrdup(t->long_name);
        else {
                _cleanup_free_ char *name = field_string(b, 100), *prefix = field_string(b + 345, 155);
                t->cur_path = prefix[0] ? xasprintf("%s/%s", prefix, name) : xstrdup(name);
        }
        if (check_name(t, t->cur_path, strlen(t->cur_path), "name") < 0)
                return -EBADMSG;
        if (et == TAR_ENTRY_SYMLINK || et == TAR_ENTRY_HARDLINK) {
                if (t->pax_link)
                        t->cur_link = xstrdup(t->pax_link);
                else if (t->long_link)
                        t->cur_link = xstrdup(t->long_link);
                else
                        t->cur_link = field_string(b + 157, 100);
                if (check_name(t, t->cur_link, strlen(t->cur_link), "link target") < 0)
                        return -EBADMSG;
        }
        clear_overrides(t);

        TarEntry e = {
                .type = et,
                .path = t->cur_path,
                .link = t->cur_link,
                .mode = (mode_t) (mode & 07777),
                .size = size,
        };
        t->n_entries++;
        r = cb->entry(ud, &e);
        if (r < 0) {
                t->state = TAR_STATE_FAILED;
                return r;
        }
        t->left = size;
        t->padding = padding_for(size);
        if (size > 0)
                t->state = TAR_STATE_DATA;
        else {
                r = cb->entry_end(ud);
                if (r < 0) {
                        t->state = TAR_STATE_FAILED;
                        return r;
                }
                t->state = TAR_STATE_HEADER;
        }
        return 0;
}

int tar_reader_feed(TarReader *t, const void *buf, size_t n, const TarCallbacks *cb, void *ud) {
        const uint8_t *p = buf;
        int r;

        while (n > 0) {
                switch (t->state) {
                case TAR_STATE_FAILED:
                        return -EBADMSG;
                case TAR_STATE_END:
                        return 0; /* trailing blocks after end-of-archive are ignored */
                case TAR_STATE_HEADER: {
                        size_t k = NUCLEUS_MIN(n, TAR_BLOCK - t->block_got);
                        memcpy(t->block + t->block_got, p, k);
                        t->block_got += k, p += k, n -= k;
                        if (t->block_got < TAR_BLOCK)
                                break;
                        t->block_got = 0;
                        r = handle_header(t, cb, ud);
                        if (r < 0)
                                return r;
                        break;
                }
                case TAR_STATE_DATA:
                case TAR_STATE_EXTENDED:
                case TAR_STATE_SKIP: {
                        size_t k = (size_t) NUCLEUS_MIN((uint64_t) n, t->left);
                        if (t->state == TAR_STATE_DATA) {
                                r = cb->data(ud, p, k);
                                if (r < 0) {
                                        t->state = TAR_STATE_FAILED;
                                        return r;
                                }
                        } else if (t->state == TAR_STATE_EXTENDED) {
                                memcpy(t->ext + t->ext_got, p, k);
                                t->ext_got += k;
                        }
                        t->left -= k, p += k, n -= k;
                        if (t->left > 0)
                                break;
                        if (t->state == TAR_STATE_DATA) {
                                r = cb->entry_end(ud);
                                if (r < 0) {
                                        t->state = TAR_STATE_FAILED;
                                        return r;
                                }
                        } else if (t->state == TAR_STATE_EXTENDED) {
                                t->ext[t->ext_got] = 0;
                                r = finish_extended(t);
                                if (r < 0)
                                        return r;
                        }
                        t->state = t->padding > 0 ? TAR_STATE_PADDING : TAR_STATE_HEADER;
                        break;
                }
                case TAR_STATE_PADDING: {
                        size_t k = (size_t) NUCLEUS_MIN((uint64_t) n, t->padding);
                        t->padding -= k, p += k, n -= k;
                        if (t->padding == 0)
                                t->state = TAR_STATE_HEADER;
                        break;
                }
                default:
                        return -EINVAL;
                }
        }
        return 0;
}

int tar_reader_finish(TarReader *t) {
        if (t->state == TAR_STATE_FAILED)
                return -EBADMSG;
        if (t->state == TAR_STATE_END)
                return 0;
        if (t->state == TAR_STATE_HEADER && t->block_got == 0 && !t->pax_path && !t->long_name &&
            !t->pax_link && !t->long_link)
                return 0; /* ended at an entry boundary without the zero blocks: tolerated */
        snprintf(t->error, sizeof t->error, "archive is truncated");
        t->state = TAR_STATE_FAILED;
        return -EBADMSG;
}
