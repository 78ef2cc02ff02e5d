/* SPDX-License-Identifier: Apache-2.0 */
/* nucleus config: the effective CLI configuration and where each value came from. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "cli-node.h"
#include "cli-opt.h"
#include "cli.h"
#include "client-paths.h"
#include "client-settings.h"
#include "json-util.h"
#include "string-util.h"

static void usage(void) {
        printf("Usage: nucleus config [OPTIONS]\n\n"
               "Show the effective configuration and the source of each value\n"
               "(environment > config.toml > default).\n\n"
               "Options:\n"
               "      --output FORMAT     text (default) or json\n"
               "  -h, --help              Show this help\n");
}

int verb_config(int argc, char **argv) {
        _cleanup_(client_settings_done) ClientSettings s = {};
        _cleanup_free_ char *err = NULL, *config_dir = NULL, *state = NULL, *images = NULL,
                            *node_config = NULL;
        OutputMode output = OUTPUT_TEXT;
        bool done;
        int r;

        r = cli_parse_simple_no_args(argc, argv, usage, &output, &done);
        if (done)
                return r;

        r = client_settings_load(&s, &err);
        if (r < 0) {
                fprintf(stderr, "nucleus config: %s\n", err ?: strerror(-r));
                return CLI_EXIT_FAILURE;
        }
        (void) client_config_dir(&config_dir);
        (void) client_state_dir(&state);
        (void) client_images_dir(&images);
        (void) client_node_config_file(&node_config);

        NodeMode mode = cli_node_mode();
        static const char *const mode_source[_NODE_MODE_MAX] = {
                [NODE_MODE_DAEMON] = "detected: no systemd unit, so 'nucleus start' runs a pid-file daemon",
                [NODE_MODE_SYSTEMD] = "detected: nucleus-node.service under systemd",
                [NODE_MODE_LIMA] = "detected: macOS, the node runs in the Lima VM",
        };
        struct {
                const char *key, *value, *source;
        } rows[] = {
                { "config_file", s.config_file, s.config_found ? "file" : "absent (defaults apply)" },
                { "config_dir", config_dir, client_config_dir_source() },
                { "node.url", s.url, s.url_source },
                { "node.actor", s.actor, s.actor_source },
                { "node.mode", node_mode_to_string(mode), mode_source[mode] },
                { "node.config", node_config, "<config dir>/node.toml" },
                { "auth.secrets_dir", s.secrets_dir, s.secrets_dir_source },
                { "auth.node_key_file", s.key_file, s.key_file_source },
                { "state_dir", state, client_state_dir_source() },
                { "images.dir",
                  images,
                  secure_getenv("NUCLEUS_IMAGES_DIR") ? "NUCLEUS_IMAGES_DIR" : "<state dir>/images" },
        };
        /* Every config.toml key as the loader sees it (value, source, line), then what the
         * environment and our path logic resolve on top. */
        _cleanup_json_ json_t *doc = s.config_json ? json_deep_copy(s.config_json) : json_object();
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                /* Values that came from config.toml keep the loader's entry (with its line). */
                json_t *have = json_object_get(doc, rows[i].key);
                if (have && rows[i].source && startswith(rows[i].source, "config.toml"))
                        continue;
                json_object_set_new(
                        doc,
                        rows[i].key,
                        json_pack("{s:s?,s:s?}", "value", rows[i].value, "source", rows[i].source));
        }
        /* [budget] keys count only when set in the file (docs/config.md): otherwise say what
         * applies instead of showing a number nothing uses. */
        static const struct {
                const char *key, *instead;
        } unset_means[] = {
                { "budget.max_cost_usd", "unset: the profile's own budget" },
                { "budget.max_input_tokens", "unset: the profile's own token limits" },
                { "budget.max_output_tokens", "unset: the profile's own token limits" },
                { "budget.timeout_seconds", "unset: the node's default, capped by the policy's window" },
        };
        for (size_t i = 0; i < ELEMENTSOF(unset_means); i++) {
                json_t *e = json_object_get(doc, unset_means[i].key);
                if (e && streq_ptr(json_string_value(json_object_get(e, "source")), "default"))
                        json_object_set_new(
                                doc,
                                unset_means[i].key,
                                json_pack("{s:n, s:s}", "value", "source", unset_means[i].instead));
        }
        if (output == OUTPUT_JSON)
                return cli_print_json(doc) < 0 ? CLI_EXIT_FAILURE : CLI_EXIT_OK;

        const char *k;
        json_t *v;
        json_object_foreach(doc, k, v) {
                json_t *val = json_object_get(v, "value");
                _cleanup_free_ char *text = json_is_string(val) ? xstrdup(json_string_value(val))
                        : json_is_null(val)
                        ? xstrdup("-")
                        : json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
                json_t *line = json_object_get(v, "line");
                const char *src = json_string_value(json_object_get(v, "source"));
                _cleanup_free_ char *vis = string_make_visible(text ?: "null");
                if (json_is_integer(line))
                        printf("%-28s %-48s (%s, line %lld)\n",
                               k,
                               vis,
                               src ?: "-",
                               (long long) json_integer_value(line));
                else
                        printf("%-28s %-48s (%s)\n", k, vis, src ?: "-");
        }
        return CLI_EXIT_OK;
}
