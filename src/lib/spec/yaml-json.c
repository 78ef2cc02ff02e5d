/* SPDX-License-Identifier: Apache-2.0 */
/* YAML -> JSON tree with positions (see yaml-json.h). The input is untrusted. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "alloc-util.h"
#include "json-util.h"
#include "string-util.h"
#include "yaml-json.h"

typedef struct YParser {
        yaml_parser_t parser;
        const char *file;
        SpecPosTable *pos;
        char *err;
        unsigned nodes;
} YParser;

_printf_(3, 4) static int yfail(YParser *Y, const yaml_mark_t *m, const char *fmt, ...) {
        va_list ap;
        if (Y->err)
                return -EBADMSG;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = xvasprintf(fmt, ap);
        va_end(ap);
        Y->err = xasprintf(
                "%s%s%zu:%zu: %s", Y->file ? Y->file : "", Y->file ? ":" : "", m->line + 1, m->column + 1, msg);
        return -EBADMSG;
}

static int next_event(YParser *Y, yaml_event_t *ev) {
        if (!yaml_parser_parse(&Y->parser, ev)) {
                yaml_mark_t m = Y->parser.problem_mark;
                return yfail(
                        Y,
                        &m,
                        "YAML syntax error: %s%s%s",
                        Y->parser.problem ? Y->parser.problem : "?",
                        Y->parser.context ? " " : "",
                        Y->parser.context ? Y->parser.context : "");
        }
        if (++Y->nodes > SPEC_YAML_MAX_NODES * 2)
                return yfail(Y, &ev->start_mark, "document has too many nodes");
        return 0;
}

static bool all_match(const char *s, const char *set) {
        return *s && strspn(s, set) == strlen(s);
}

static json_t *resolve_plain(const char *s) {
        if (streq(s, "") || streq(s, "~") || streq(s, "null") || streq(s, "Null") || streq(s, "NULL"))
                return json_null();
        if (streq(s, "true") || streq(s, "True") || streq(s, "TRUE"))
                return json_true();
        if (streq(s, "false") || streq(s, "False") || streq(s, "FALSE"))
                return json_false();
        const char *d = s + (*s == '-' || *s == '+');
        if (all_match(d, "0123456789")) {
                errno = 0;
                char *e = NULL;
                long long v = strtoll(s, &e, 10);
                if (errno == 0 && *e == 0)
                        return json_integer((json_int_t) v);
                return NULL; /* out of range: caller reports */
        }
        /* float: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
        const char *q = d;
        size_t intd = strspn(q, "0123456789");
        q += intd;
        size_t fracd = 0;
        if (*q == '.') {
                q++;
                fracd = strspn(q, "0123456789");
                q += fracd;
        }
        if (intd + fracd > 0 && (*q == 0 || *q == 'e' || *q == 'E')) {
                bool ok = true;
                if (*q) {
                        q++;
                        if (*q == '+' || *q == '-')
                                q++;
                        ok = all_match(q, "0123456789");
                }
                if (ok && strchr(d, '.') == NULL && !strpbrk(d, "eE"))
                        ok = false;
                if (ok) {
                        double v = strtod(s, NULL);
                        if (isfinite(v))
                                return json_real(v);
                }
        }
        return json_string(s);
}

static int parse_node(YParser *Y, yaml_event_t *ev, const char *path, unsigned depth, json_t **ret);

static int parse_mapping(YParser *Y, const char *path, unsigned depth, json_t **ret) {
        _cleanup_json_ json_t *obj = json_object();
        for (;;) {
                yaml_event_t kev;
                int r = next_event(Y, &kev);
                if (r < 0)
                        return r;
                if (kev.type == YAML_MAPPING_END_EVENT) {
                        yaml_event_delete(&kev);
                        break;
                }
                if (kev.type != YAML_SCALAR_EVENT) {
                        r = yfail(Y, &kev.start_mark, "mapping keys must be plain strings");
                        yaml_event_delete(&kev);
                        return r;
                }
                if (kev.data.scalar.anchor ||
                    (kev.data.scalar.tag && !kev.data.scalar.plain_implicit &&
                     !kev.data.scalar.quoted_implicit)) {
                        r = yfail(Y, &kev.start_mark, "anchors and tags are not supported");
                        yaml_event_delete(&kev);
                        return r;
                }
                const char *key = (const char *) kev.data.scalar.value;
                yaml_mark_t km = kev.start_mark;
                if (strlen(key) != kev.data.scalar.length || strlen(key) > 256 || streq(key, "<<")) {
                        r = yfail(Y, &km, "invalid mapping key");
                        yaml_event_delete(&kev);
                        return r;
                }
                _cleanup_free_ char *kpath = spec_path_key(path, key);
                if (json_object_get(obj, key)) {
                        r = yfail(Y, &km, "%s: duplicate key", kpath);
                        yaml_event_delete(&kev);
                        return r;
                }
                _cleanup_free_ char *keycopy = xstrdup(key);
                yaml_event_delete(&kev);
                if (Y->pos)
                        spec_pos_add(Y->pos, kpath, (unsigned) km.line + 1, (unsigned) km.column + 1);
                yaml_event_t vev;
                r = next_event(Y, &vev);
                if (r < 0)
                        return r;
                json_t *v = NULL;
                r = parse_node(Y, &vev, kpath, depth + 1, &v);
                yaml_event_delete(&vev);
                if (r < 0)
                        return r;
                json_object_set_new(obj, keycopy, v);
        }
        *ret = TAKE_PTR(obj);
        return 0;
}

static int parse_sequence(YParser *Y, const char *path, unsigned depth, json_t **ret) {
        _cleanup_json_ json_t *arr = json_array();
        for (size_t i = 0;; i++) {
                yaml_event_t ev;
                int r = next_event(Y, &ev);
                if (r < 0)
                        return r;
                if (ev.type == YAML_SEQUENCE_END_EVENT) {
                        yaml_event_delete(&ev);
                        break;
                }
                _cleanup_free_ char *ipath = spec_path_index(path, i);
                if (Y->pos)
                        spec_pos_add(
                                Y->pos,
                                ipath,
                                (unsigned) ev.start_mark.line + 1,
                                (unsigned) ev.start_mark.column + 1);
                json_t *v = NULL;
                r = parse_node(Y, &ev, ipath, depth + 1, &v);
                yaml_event_delete(&ev);
                if (r < 0)
                        return r;
                json_array_append_new(arr, v);
        }
        *ret = TAKE_PTR(arr);
        return 0;
}

static int parse_node(YParser *Y, yaml_event_t *ev, const char *path, unsigned depth, json_t **ret) {
        if (depth > SPEC_YAML_MAX_DEPTH)
                return yfail(Y, &ev->start_mark, "nested deeper than %u levels", SPEC_YAML_MAX_DEPTH);
        switch (ev->type) {
        case YAML_ALIAS_EVENT:
                return yfail(Y, &ev->start_mark, "YAML aliases are not supported");
        case YAML_SCALAR_EVENT: {
                if (ev->data.scalar.anchor)
                        return yfail(Y, &ev->start_mark, "YAML anchors are not supported");
                if (ev->data.scalar.tag && !ev->data.scalar.plain_implicit && !ev->data.scalar.quoted_implicit)
                        return yfail(Y, &ev->start_mark, "explicit YAML tags are not supported");
                const char *s = (const char *) ev->data.scalar.value;
                if (strlen(s) != ev->data.scalar.length)
                        return yfail(Y, &ev->start_mark, "NUL character in a string");
                json_t *v = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? resolve_plain(s)
                                                                             : json_string(s);
                if (!v)
                        return yfail(Y, &ev->start_mark, "number out of range or invalid UTF-8");
                *ret = v;
                return 0;
        }
        case YAML_MAPPING_START_EVENT:
                if (ev->data.mapping_start.anchor ||
                    (ev->data.mapping_start.tag && !ev->data.mapping_start.implicit))
                        return yfail(Y, &ev->start_mark, "anchors and tags are not supported");
                return parse_mapping(Y, path, depth, ret);
        case YAML_SEQUENCE_START_EVENT:
                if (ev->data.sequence_start.anchor ||
                    (ev->data.sequence_start.tag && !ev->data.sequence_start.implicit))
                        return yfail(Y, &ev->start_mark, "anchors and tags are not supported");
                return parse_sequence(Y, path, depth, ret);
        default:
                return yfail(Y, &ev->start_mark, "unexpected YAML event");
        }
}

int spec_yaml_to_json(
        const char *text, size_t n, const char *filename, json_t **ret, SpecPosTable *pos, char **reterr) {
        YParser Y = { .file = filename, .pos = pos };
        _cleanup_json_ json_t *root = NULL;
        yaml_event_t ev;
        int r;

        if (n > SPEC_YAML_MAX_SIZE) {
                if (reterr)
                        *reterr = xasprintf(
                                "%s%sfile is %zu bytes, over the limit of %u",
                                filename ? filename : "",
                                filename ? ": " : "",
                                n,
                                SPEC_YAML_MAX_SIZE);
                return -EFBIG;
        }
        if (memchr(text, 0, n)) {
                if (reterr)
                        *reterr = xasprintf(
                                "%s%sNUL byte in the document", filename ? filename : "", filename ? ": " : "");
                return -EBADMSG;
        }
        if (!yaml_parser_initialize(&Y.parser))
                oom_abort();
        yaml_parser_set_input_string(&Y.parser, (const unsigned char *) text, n);
        yaml_parser_set_encoding(&Y.parser, YAML_UTF8_ENCODING);

        /* STREAM-START, DOCUMENT-START, node, DOCUMENT-END, STREAM-END */
        r = next_event(&Y, &ev);
        if (r >= 0) {
                if (ev.type != YAML_STREAM_START_EVENT)
                        r = yfail(&Y, &ev.start_mark, "expected a YAML stream");
                yaml_event_delete(&ev);
        }
        if (r >= 0) {
                r = next_event(&Y, &ev);
                if (r >= 0) {
                        if (ev.type == YAML_STREAM_END_EVENT)
                                r = yfail(&Y, &ev.start_mark, "empty document");
                        else if (ev.type != YAML_DOCUMENT_START_EVENT)
                                r = yfail(&Y, &ev.start_mark, "expected a YAML document");
                        yaml_event_delete(&ev);
                }
        }
        if (r >= 0) {
                r = next_event(&Y, &ev);
                if (r >= 0) {
                        r = parse_node(&Y, &ev, "", 0, &root);
                        yaml_event_delete(&ev);
                }
        }
        if (r >= 0) {
                r = next_event(&Y, &ev);
                if (r >= 0) {
                        if (ev.type != YAML_DOCUMENT_END_EVENT)
                                r = yfail(&Y, &ev.start_mark, "expected the end of the document");
                        yaml_event_delete(&ev);
                }
        }
        if (r >= 0) {
                r = next_event(&Y, &ev);
                if (r >= 0) {
                        if (ev.type != YAML_STREAM_END_EVENT)
                                r = yfail(&Y, &ev.start_mark, "only one YAML document is allowed");
                        yaml_event_delete(&ev);
                }
        }
        yaml_parser_delete(&Y.parser);
        if (r < 0) {
                if (reterr)
                        *reterr = TAKE_PTR(Y.err);
                free(Y.err);
                return r;
        }
        *ret = TAKE_PTR(root);
        return 0;
}
