/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus logs POD [-f] [--tail N] [--events] [--output json]: a pod's logs (signed GET
 * /v1/pods/ID/logs: the node's lines about the pod, then the console) or its live audit
 * events (GET .../events). -f follows each section and prints only what is new. The text
 * comes from the guest and is untrusted: every line goes through the one escaping function
 * (escape.h), after a CR before the line end is dropped (serial consoles end lines in CRLF).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc-util.h"
#include "cli-files.h"
#include "cli-pod.h"
#include "cli.h"
#include "client-settings.h"
#include "escape.h"
#include "fd-util.h"
#include "json-util.h"
#include "parse-util.h"
#include "string-util.h"

#define LOGS_POLL_USEC (500 * 1000)
#define LOGS_RESYNC_BYTES 4096

static void usage(void) {
        printf("Usage: nucleus logs POD [OPTIONS]\n\n"
               "Show a pod's logs: the node's lines about it, then its console. POD is an id, a\n"
               "unique id prefix or a name.\n\n"
               "Options:\n"
               "  -f, --follow            Keep printing new lines until the pod ends (Ctrl-C stops)\n"
               "      --tail N            Only the last N lines\n"
               "      --events            Stream the pod's live audit events instead (one line each:\n"
               "                          TIME EVENT JSON) until the pod ends\n"
               "      --output FORMAT     text (default) or json: one document {\"pod\", \"node\": "
               "[lines],\n"
               "                          \"console\": [lines]}; with -f or --events one JSON object per\n"
               "                          line ({\"stream\", \"line\"} or {\"event\", \"time\", "
               "\"record\"})\n"
               "  -h, --help              Show this help\n");
}

/* A log as the node serves it: sections under "==> NAME <==" lines. */
typedef struct LogSection {
        char *name; /* "node", "console"; "" for text before any header */
        char *text; /* the section's bytes, complete lines */
        size_t size;
} LogSection;

typedef struct LogSections {
        LogSection *items;
        size_t n;
} LogSections;

static void log_sections_done(LogSections *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->items[i].name);
                free(s->items[i].text);
        }
        s->items = mfree(s->items);
        s->n = 0;
}

static LogSection *log_sections_get(LogSections *s, const char *name) {
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->items[i].name, name))
                        return &s->items[i];
        s->items = xrealloc(s->items, (s->n + 1) * sizeof *s->items);
        s->items[s->n] = (LogSection){ .name = xstrdup(name), .text = xstrdup("") };
        return &s->items[s->n++];
}

static void log_sections_parse(const char *body, size_t n, LogSections *ret) {
        LogSection *cur = NULL;
        size_t i = 0;
        while (i < n) {
                const char *nl = memchr(body + i, '\n', n - i);
                size_t len = nl ? (size_t) (nl - (body + i)) : n - i;
                const char *line = body + i;
                if (len > 8 && memcmp(line, "==> ", 4) == 0 && memcmp(line + len - 4, " <==", 4) == 0) {
                        _cleanup_free_ char *name = xstrndup(line + 4, len - 8);
                        cur = log_sections_get(ret, name);
                } else {
                        if (!cur)
                                cur = log_sections_get(ret, "");
                        cur->text = xrealloc(cur->text, cur->size + len + 2);
                        memcpy(cur->text + cur->size, line, len);
                        cur->size += len;
                        cur->text[cur->size++] = '\n';
                        cur->text[cur->size] = 0;
                }
                i += len + 1;
        }
}

/* One line of untrusted text made safe to print: a CR before the end dropped, the rest
 * escaped. */
static char *visible_line(const char *line, size_t len) {
        if (len > 0 && line[len - 1] == '\r')
                len--;
        return escape_text(line, len, 0);
}

typedef struct LogsOutput {
        OutputMode mode;
        const char *last_section; /* text mode: the header printed last */
        json_t *doc;              /* JSON mode without -f: {"pod", "node": [...], ...} */
} LogsOutput;

static void emit_lines(LogsOutput *o, const char *section, const char *text, size_t n, bool follow) {
        size_t i = 0;
        while (i < n) {
                const char *nl = memchr(text + i, '\n', n - i);
                size_t len = nl ? (size_t) (nl - (text + i)) : n - i;
                _cleanup_free_ char *vis = visible_line(text + i, len);
                if (o->mode == OUTPUT_JSON && follow) {
                        _cleanup_json_ json_t *j = json_pack("{s:s, s:s}", "stream", section, "line", vis);
                        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
                        printf("%s\n", s);
                } else if (o->mode == OUTPUT_JSON) {
                        json_t *a = json_object_get(o->doc, isempty(section) ? "other" : section);
                        if (!a) {
                                a = json_array();
                                json_object_set_new(o->doc, isempty(section) ? "other" : section, a);
                        }
                        json_array_append_new(a, json_string(vis));
                } else {
                        if (!isempty(section) && !streq_ptr(o->last_section, section)) {
                                _cleanup_free_ char *h = string_make_visible(section);
                                printf("==> %s <==\n", h);
                        }
                        o->last_section = section;
                        printf("%s\n", vis);
                }
                i += len + 1;
        }
        fflush(stdout);
}

/* The part of now that follows what was already printed (prev): all of it when now simply
 * grew, the part after the last LOGS_RESYNC_BYTES printed when the node's window slid, or all
 * of it when nothing overlaps (the log rolled over). */
static size_t new_part(const LogSection *prev, const LogSection *now) {
        if (!prev || prev->size == 0)
                return 0;
        if (now->size >= prev->size && memcmp(now->text, prev->text, prev->size) == 0)
                return prev->size;
        size_t k = NUCLEUS_MIN(prev->size, (size_t) LOGS_RESYNC_BYTES);
        const char *hit = memmem(now->text, now->size, prev->text + prev->size - k, k);
        return hit ? (size_t) (hit - now->text) + k : 0;
}

/* --events: one line per server-sent event. */
static int on_event(const char *event, const char *data, void *userdata) {
        LogsOutput *o = userdata;
        _cleanup_json_ json_t *rec = json_loads(data, JSON_REJECT_DUPLICATES, NULL);
        const char *ts = json_string_value(json_object_get(rec, "ts"))
                ?: json_string_value(json_object_get(rec, "time"));
        char now[32];
        if (!ts) {
                /* Records without a time of their own get the time they arrived. */
                time_t t = time(NULL);
                struct tm tm;
                (void) gmtime_r(&t, &tm);
                (void) strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
                ts = now;
        }
        if (o->mode == OUTPUT_JSON) {
                _cleanup_json_ json_t *j = json_pack(
                        "{s:s, s:s, s:O?}", "event", event ?: "audit", "time", ts, "record", rec);
                if (!rec)
                        json_object_set_new(j, "data", json_string(data));
                _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
                _cleanup_free_ char *vis = escape_text(s, strlen(s), ESCAPE_JSON);
                printf("%s\n", vis);
        } else {
                _cleanup_free_ char *vis = string_make_visible(data), *tvis = string_make_visible(ts),
                                    *evis = string_make_visible(event ?: "audit");
                printf("%s %s %s\n", tvis, evis, vis);
        }
        fflush(stdout);
        return 0;
}

static int fetch(NucleusClient *c, const char *path, ClientResponse *resp, ClientError *e) {
        int r = client_request(c, "GET", path, NULL, NULL, 0, resp, e);
        if (r >= 0 && (resp->status < 200 || resp->status >= 300)) {
                client_error_from_response(resp, e);
                return -EREMOTEIO;
        }
        return r;
}

/* Is the pod finished? Errors count as "no" (the next poll reports them). */
static bool pod_finished(NucleusClient *c, const char *pod) {
        _cleanup_free_ char *path = xasprintf("/v1/pods/%s", pod);
        _cleanup_json_ json_t *j = NULL;
        _cleanup_client_error_ ClientError e = {};
        if (client_call_json(c, "GET", path, NULL, &j, &e) < 0)
                return false;
        return cli_pod_state_ended(json_string_value(json_object_get(j, "state")));
}

/* Prints the log once, or (follow) polls it and prints, per section, only the new lines until
 * the pod has ended (after one last fetch) or an error. */
static int show(NucleusClient *c, const char *pod, const char *path, bool follow, LogsOutput *o, ClientError *e) {
        _cleanup_(log_sections_done) LogSections seen = {};

        for (;;) {
                bool finished = !follow || pod_finished(c, pod);
                _cleanup_(client_response_done) ClientResponse resp = {};
                _cleanup_(log_sections_done) LogSections now = {};
                int r = fetch(c, path, &resp, e);
                if (r < 0)
                        return r;
                log_sections_parse(resp.body, resp.size, &now);
                for (size_t i = 0; i < now.n; i++) {
                        LogSection *prev = NULL;
                        for (size_t k = 0; k < seen.n; k++)
                                if (streq(seen.items[k].name, now.items[i].name))
                                        prev = &seen.items[k];
                        size_t from = new_part(prev, &now.items[i]);
                        if (from < now.items[i].size)
                                emit_lines(
                                        o,
                                        now.items[i].name,
                                        now.items[i].text + from,
                                        now.items[i].size - from,
                                        follow);
                }
                log_sections_done(&seen);
                seen = now;
                now = (LogSections){};
                if (finished)
                        return 0;
                (void) usleep(LOGS_POLL_USEC);
        }
}

int verb_logs(int argc, char **argv) {
        enum {
                ARG_TAIL = 0x100,
                ARG_EVENTS,
        };
        static const struct option options[] = {
                CLI_OPTION_HELP,
                CLI_OPTION_OUTPUT,
                { "follow", no_argument, NULL, 'f' },
                { "tail", required_argument, NULL, ARG_TAIL },
                { "events", no_argument, NULL, ARG_EVENTS },
                {},
        };
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_free_ char *err = NULL, *path = NULL, *pod = NULL;
        _cleanup_json_ json_t *doc = NULL;
        OutputMode output = OUTPUT_TEXT;
        bool follow_mode = false, events = false;
        uint32_t tail = 0;
        int ch, r;

        while ((ch = getopt_long(argc, argv, "hf", options, NULL)) >= 0)
                switch (ch) {
                case 'f':
                        follow_mode = true;
                        break;
                case ARG_EVENTS:
                        events = true;
                        break;
                case ARG_TAIL:
                        if (safe_atou32(optarg, &tail) < 0 || tail == 0)
                                return cli_usage_error(
                                        "logs", "--tail needs a positive number, not '%s'", optarg);
                        break;
                default:
                        r = cli_option_common(ch, usage, &output);
                        if (r != CLI_OPTION_CONTINUE)
                                return r;
                }
        if (optind + 1 != argc)
                return cli_usage_error(
                        "logs", "expected exactly one POD (an id, a unique id prefix or a name)");
        const char *ref = argv[optind];
        if (!cli_pod_id_valid(ref))
                return cli_usage_error(
                        "logs", "'%s' is not a pod id or name (letters, digits, '-' and '_')", ref);
        if (events && (follow_mode || tail > 0))
                return cli_usage_error("logs", "--events cannot be combined with --follow or --tail");

        r = client_open_default(&c, &err);
        if (r < 0)
                return cli_fail(output, "io_error", "%s", err ?: strerror(-r));
        r = cli_pod_resolve(c, NULL, ref, &pod, &err);
        if (r < 0)
                return cli_fail(output, r == -EEXIST ? "ambiguous" : "io_error", "%s", err);

        LogsOutput o = { .mode = output };
        if (events) {
                /* A stream has no total timeout; only connecting is bounded. */
                _cleanup_free_ char *epath = xasprintf("/v1/pods/%s/events", pod);
                r = client_stream(c, epath, NULL, on_event, &o, &e);
        } else {
                if (tail > 0)
                        path = xasprintf("/v1/pods/%s/logs?tail=%u", pod, tail);
                else
                        path = xasprintf("/v1/pods/%s/logs", pod);
                if (output == OUTPUT_JSON && !follow_mode)
                        o.doc = doc = json_pack("{s:s, s:[], s:[]}", "pod", pod, "node", "console");
                r = show(c, pod, path, follow_mode, &o, &e);
        }
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e), *local = NULL;
                if (e.status == 404 && (local = cli_local_pod_dir(pod)))
                        /* A node forgets the pods of its earlier runs; their files stay. */
                        return cli_fail(
                                output,
                                e.kind ?: "not_found",
                                "%s\nthe node does not know this pod (restarted since?); its logs "
                                "stay in %s (console.log, node.log)",
                                d,
                                local);
                if (e.status == 404 && strlen(ref) != CLI_POD_FULL_ID_LEN && streq(pod, ref))
                        /* A short reference (a name, a prefix) that matched nothing: the node's
                         * "not a UUID" would miss the point. */
                        return cli_fail(
                                output,
                                "not_found",
                                "no pod has the id, id prefix or name '%s' (nucleus ps -a lists them)",
                                ref);
                return cli_fail(output, e.kind ?: "io_error", "%s", d);
        }
        if (doc)
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
        return CLI_EXIT_OK;
}
