/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the CLI and node config loaders (src/lib/spec/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc-util.h"
#include "config.h"
#include "json-util.h"

static char *write_tmp(const char *text) {
        char t[] = "/tmp/nucleus-test-config-XXXXXX";
        int fd = mkstemp(t);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        return xstrdup(t);
}

static void test_cli_defaults(void **state) {
        CliConfig *c = NULL;
        assert_int_equal(cli_config_load("/nonexistent/config.toml", false, &c, NULL), 0);
        assert_null(c->path);
        assert_string_equal(c->node.url, "http://127.0.0.1:8080");
        assert_string_equal(c->node.actor, "nucleus-cli");
        assert_int_equal(c->vm.cpus, 4);
        assert_true(c->vm.auto_start);
        assert_int_equal(c->budget.max_cost_usd_micros, 5000000);
        assert_string_equal(c->model.provider, "openai");
        assert_string_equal(c->model.api_key_env, "OPENAI_API_KEY");
        assert_string_equal(c->default_profile, "restrictive");
        assert_int_equal(c->origins[CLI_VM_CPUS].source, CONFIG_SOURCE_DEFAULT);
        cli_config_free(c);
        char *err = NULL;
        assert_int_equal(cli_config_load("/nonexistent/config.toml", true, &c, &err), -ENOENT);
        free(err);
}

static void test_cli_file(void **state) {
        _cleanup_free_ char *p = write_tmp("default_profile = \"read-only\"\n"
                                           "[vm]\ncpus = 2\nauto_start = false\n"
                                           "[budget]\nmax_cost_usd = 1.25\n"
                                           "[model]\nprovider = \"anthropic\"\nprice_in_per_mtok_usd = 2\n"
                                           "idle_timeout_seconds = 45\n"
                                           "[images]\npackages = [\"jq\", \"ripgrep\"]\n");
        CliConfig *c = NULL;
        char *err = NULL;
        if (cli_config_load(p, true, &c, &err) < 0)
                fail_msg("%s", err);
        assert_string_equal(c->default_profile, "read-only");
        assert_int_equal(c->vm.cpus, 2);
        assert_false(c->vm.auto_start);
        assert_int_equal(c->budget.max_cost_usd_micros, 1250000);
        assert_string_equal(c->model.base_url, "https://api.anthropic.com");
        assert_string_equal(c->model.api_key_env, "ANTHROPIC_API_KEY");
        assert_int_equal(c->model.price_in_per_mtok_usd_micros, 2000000);
        assert_int_equal(c->model.price_out_per_mtok_usd_micros, 15000000);
        assert_int_equal(c->model.idle_timeout_seconds, 45);
        assert_int_equal(c->model.connect_timeout_seconds, 30);
        assert_int_equal(cli_config_set(c, "model.idle_timeout_seconds", "0", &err), -EINVAL);
        err = mfree(err);
        assert_string_equal(c->images.packages[1], "ripgrep");
        assert_int_equal(c->origins[CLI_VM_CPUS].source, CONFIG_SOURCE_FILE);
        assert_int_equal(c->origins[CLI_VM_CPUS].line, 3);
        assert_int_equal(cli_config_set(c, "node.url", "http://10.0.0.2:8080", NULL), 0);
        assert_int_equal(c->origins[CLI_NODE_URL].source, CONFIG_SOURCE_FLAG);
        assert_int_equal(cli_config_set(c, "vm.cpus", "999", &err), -EINVAL);
        free(err);
        err = NULL;
        assert_int_equal(cli_config_set(c, "nope", "1", &err), -EINVAL);
        free(err);
        _cleanup_json_ json_t *j = cli_config_to_json(c, true);
        json_t *cpus = json_object_get(j, "vm.cpus");
        assert_string_equal(json_string_value(json_object_get(cpus, "source")), "file");
        assert_int_equal(json_integer_value(json_object_get(cpus, "line")), 3);
        cli_config_free(c);
}

static void expect_cli_err(const char *text, const char *part) {
        _cleanup_free_ char *p = write_tmp(text);
        CliConfig *c = NULL;
        char *err = NULL;
        if (cli_config_load(p, true, &c, &err) >= 0)
                fail_msg("accepted: %s", text);
        if (!strstr(err, part))
                fail_msg("error '%s' lacks '%s'", err, part);
        free(err);
        unlink(p);
}

static void test_cli_errors(void **state) {
        expect_cli_err("[vm]\ncpus = 0\n", ":2:1: vm.cpus: must be an integer 1..64");
        expect_cli_err("[vm]\ncpu = 2\n", ":2:1: vm.cpu: unknown key");
        expect_cli_err("[firecracker]\nkernel_path = \"x\"\n", "firecracker.kernel_path: unknown section");
        expect_cli_err("[model]\napi_key = \"sk-123\"\n", "secrets never go in config files");
        expect_cli_err("[model]\nprovider = \"gemini\"\n", "must be one of: openai, anthropic");
        expect_cli_err("[model]\napi_key_env = \"sk-abc\"\n", "environment variable NAME");
        expect_cli_err("[node]\nurl = \"ftp://x\"\n", "http:// or https://");
        expect_cli_err("[vm]\nauto_start = \"yes\"\n", "true or false");
        expect_cli_err("[budget]\nmax_cost_usd = -1.0\n", "US dollars");
        expect_cli_err("default_profile = \"godmode\"\n", "unknown policy profile");
        expect_cli_err("[vm]\ncpus = 1\ncpus = 2\n", "duplicate key");
}

/* [images.NAME] tables: named images with their package lists, checked where they are written. */
static void test_cli_image_tables(void **state) {
        _cleanup_free_ char *p = write_tmp("[images]\npackages = [\"jq\"]\n"
                                           "[images.python]\npackages = [\"python3\", \"python3-pytest\"]\n"
                                           "\n[images.ml-tools]\npackages = [\"g++\", \"libstdc++6\", "
                                           "\"python3.11\"]\n");
        CliConfig *c = NULL;
        char *err = NULL;
        if (cli_config_load(p, true, &c, &err) < 0)
                fail_msg("%s", err);
        assert_int_equal(json_object_size(c->images.named), 2);
        json_t *py = json_object_get(c->images.named, "python");
        assert_string_equal(
                json_string_value(json_array_get(json_object_get(py, "packages"), 1)), "python3-pytest");
        assert_int_equal(json_integer_value(json_object_get(py, "line")), 3);
        json_t *ml = json_object_get(c->images.named, "ml-tools");
        assert_int_equal(json_array_size(json_object_get(ml, "packages")), 3);
        assert_int_equal(json_integer_value(json_object_get(ml, "line")), 6);
        assert_string_equal(c->images.packages[0], "jq");
        assert_int_equal(c->origins[CLI_IMAGES_NAMED].source, CONFIG_SOURCE_FILE);
        _cleanup_json_ json_t *j = cli_config_to_json(c, false);
        assert_non_null(json_object_get(json_object_get(j, "images.NAME"), "python"));
        cli_config_free(c);
        unlink(p);

        assert_int_equal(cli_config_load("/nonexistent/config.toml", false, &c, NULL), 0);
        assert_int_equal(json_object_size(c->images.named), 0);
        cli_config_free(c);

        /* Errors name the file, the table and the key. */
        expect_cli_err(
                "[images.python]\npackages = [\"python3\"]\nsuite = \"trixie\"\n",
                "images.python.suite: unknown key 'suite'");
        expect_cli_err(
                "[images.python]\npackages = [\"python3\", \"Python3\"]\n",
                ":2:1: images.python.packages: item 1 'Python3' is not a Debian package name");
        expect_cli_err("[images.x]\npackages = [\"-rf\"]\n", "'-rf' is not a Debian package name");
        expect_cli_err("[images.x]\npackages = [\"a\"]\n", "'a' is not a Debian package name");
        expect_cli_err("[images.x]\npackages = [\"libc6:amd64\"]\n", "not a Debian package name");
        expect_cli_err("[images.x]\npackages = []\n", "images.x.packages: must be a list of 1..256");
        expect_cli_err("[images.x]\n", "images.x: packages = [...] is required");
        expect_cli_err("[images.Py]\npackages = [\"python3\"]\n", "images.Py: 'Py' is not an image name");
        expect_cli_err("[images.cache]\npackages = [\"python3\"]\n", "reserved");
        expect_cli_err("[images.x]\npackages = \"python3\"\n", "images.x.packages: must be a list");
        /* The file is named in every message. */
        expect_cli_err("[images.x]\npackages = [1]\n", "/tmp/nucleus-test-config-");
}

static void test_node(void **state) {
        NodeConfig *c = NULL;
        char *err = NULL;
        assert_int_equal(node_config_load("/nonexistent/node.toml", false, &c, NULL), 0);
        assert_string_equal(c->listen, "127.0.0.1:8080");
        assert_string_equal(c->metrics_listen, "127.0.0.1:9080");
        assert_string_equal(c->state_dir, "/var/lib/nucleus");
        assert_string_equal(c->images_dir, "/var/lib/nucleus/images");
        assert_string_equal(c->driver, "qemu");
        assert_string_equal(c->accel, "auto");
        assert_string_equal(c->node_secret_file, "/etc/nucleus/secrets/node.key");
        assert_int_equal(c->max_body_bytes, 10485760);
        assert_true(c->net_enabled);
        assert_int_equal(c->tcg_tb_mib, 32);
        assert_false(c->ksm);
        assert_int_equal(json_object_size(c->pool_images), 0); /* no warm pool by default */
        assert_int_equal(c->pool_memory_budget_mib, 4096);
        assert_int_equal(node_config_set(c, "pool.images", "default=2,python=1", NULL), 0);
        assert_int_equal(json_integer_value(json_object_get(c->pool_images, "python")), 1);
        assert_int_equal(node_config_set(c, "pool.images", "default=65", &err), -EINVAL);
        assert_non_null(strstr(err, "pool.images: default: must be an integer 0..64"));
        free(err);
        err = NULL;
        assert_false(c->pool_network); /* pooled pods have no NIC unless asked */
        assert_int_equal(node_config_set(c, "pool.network", "true", NULL), 0);
        assert_true(c->pool_network);
        assert_int_equal(node_config_set(c, "pool.network", "maybe", &err), -EINVAL);
        assert_non_null(strstr(err, "pool.network"));
        free(err);
        err = NULL;
        assert_int_equal(node_config_set(c, "node.listen", "[::1]:18080", NULL), 0);
        assert_int_equal(node_config_set(c, "node.listen", "localhost:80", &err), -EINVAL);
        free(err);
        err = NULL;
        assert_int_equal(node_config_set(c, "node.metrics_listen", "[::1]:18080", &err), -EINVAL);
        free(err);
        err = NULL;
        node_config_free(c);

        _cleanup_free_ char *p = write_tmp("[node]\nlisten = \"0.0.0.0:8443\"\nstate_dir = "
                                           "\"/srv/nucleus\"\n"
                                           "[pods]\ndriver = \"local\"\naccel = \"tcg\"\nmax_pods = 4\n"
                                           "tcg_tb_mib = 16\nksm = true\n"
                                           "[pool]\nmemory_budget_mib = 2048\n"
                                           "[pool.images]\ndefault = 1\npython = 0\n"
                                           "[net]\npool = \"10.77.0.0/16\"\ndns_upstream = "
                                           "\"203.0.113.53\"\n");
        if (node_config_load(p, true, &c, &err) < 0)
                fail_msg("%s", err);
        assert_string_equal(c->listen, "0.0.0.0:8443");
        assert_string_equal(c->net_dns_upstream, "203.0.113.53");
        assert_string_equal(c->driver, "local");
        assert_int_equal(c->max_pods, 4);
        assert_int_equal(c->origins[NODE_MAX_PODS].line, 7);
        assert_int_equal(c->tcg_tb_mib, 16);
        assert_true(c->ksm);
        assert_int_equal(c->pool_memory_budget_mib, 2048);
        assert_int_equal(json_integer_value(json_object_get(c->pool_images, "default")), 1);
        assert_int_equal(json_integer_value(json_object_get(c->pool_images, "python")), 0);
        {
                json_t *j = node_config_to_json(c, false);
                assert_int_equal(
                        json_integer_value(json_object_get(json_object_get(j, "pool.images"), "default")), 1);
                json_decref(j);
        }
        node_config_free(c);
        {
                /* The inline form is the same table. */
                _cleanup_free_ char *q = write_tmp("[pool]\nimages = { default = 3 }\n");
                if (node_config_load(q, true, &c, &err) < 0)
                        fail_msg("%s", err);
                assert_int_equal(json_integer_value(json_object_get(c->pool_images, "default")), 3);
                node_config_free(c);
                unlink(q);
        }
        {
                /* Errors name the key. */
                static const struct {
                        const char *text, *want;
                } errs[] = {
                        { "[pool.images]\ndefault = 65\n", "pool.images: default: must be an integer 0..64" },
                        { "[pool.images]\ndefault = -1\n", "pool.images: default: must be an integer 0..64" },
                        { "[pool.images]\ndefault = \"1\"\n", "pool.images: default: must be an integer" },
                        { "[pool.images]\n\"Bad Name\" = 1\n",
                          "pool.images: image name 'Bad Name' must match" },
                        { "[pool]\nimages = 1\n", "pool.images: must be a table of image names" },
                        { "[pool]\ndefault = 1\n", "pool.default: unknown key" },
                        { "[pool]\nmemory_budget_mib = -5\n", "pool.memory_budget_mib: must be an integer" },
                };
                for (size_t i = 0; i < ELEMENTSOF(errs); i++) {
                        _cleanup_free_ char *q = write_tmp(errs[i].text);
                        err = NULL;
                        if (node_config_load(q, true, &c, &err) >= 0)
                                fail_msg("accepted: %s", errs[i].text);
                        if (!strstr(err, errs[i].want))
                                fail_msg("%s: got '%s', want '%s'", errs[i].text, err, errs[i].want);
                        free(err);
                        unlink(q);
                }
        }

        const char *bad[] = {
                "[node]\nstate_dir = \"relative\"\n",
                "[node]\nstate_dir = \"/a/../b\"\n",
                "[pods]\naccel = \"hvf\"\n",
                "[net]\npool = \"10.0.0.1/16\"\n",
                "[net]\npool = \"10.0.0.0/30\"\n",
                "[net]\ndns_upstream = \"dns.example.com\"\n",
                "[net]\ndns_upstream = \"2001:db8::53\"\n",
                "[net]\ndns_upstream = \"10.0.0.0/8\"\n",
                "[pods]\ndefault_timeout_seconds = 100\nmax_timeout_seconds = 50\n",
                "[pods]\nqemu_binary = \"bin/qemu\"\n",
                "[pods]\ntcg_tb_mib = 2\n",
                "[pods]\nksm = \"yes\"\n",
                "[secrets]\nnode_secret = \"abc\"\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *q = write_tmp(bad[i]);
                err = NULL;
                if (node_config_load(q, true, &c, &err) >= 0)
                        fail_msg("accepted: %s", bad[i]);
                assert_non_null(err);
                free(err);
                unlink(q);
        }
}

/* The exact shapes `nucleus setup` writes (src/cli/verb-setup.c) must load. */
static void test_setup_written(void **state) {
        _cleanup_free_ char *cli = write_tmp("# comment\n\n[node]\n# The node's API.\nurl = "
                                             "\"http://127.0.0.1:8080\"\n"
                                             "actor = \"nucleus-cli\"\n\n[auth]\nsecrets_dir = "
                                             "\"/root/.config/nucleus/secrets\"\n\n"
                                             "[vm]\nname = \"nucleus\"\ncpus = 4\nmemory_gib = 8\ndisk_gib "
                                             "= 50\n");
        _cleanup_free_ char *node = write_tmp("[node]\nlisten = \"127.0.0.1:8080\"\nmetrics_listen = "
                                              "\"127.0.0.1:9080\"\n"
                                              "state_dir = \"/var/lib/nucleus\"\nimages_dir = "
                                              "\"/var/lib/nucleus/images\"\n\n"
                                              "[pods]\ndriver = \"qemu\"\n# probe\naccel = "
                                              "\"tcg\"\n\n[secrets]\n"
                                              "node_secret_file = \"/etc/nucleus/secrets/node.key\"\n"
                                              "approver_public_key_file = "
                                              "\"/etc/nucleus/secrets/approver.pub\"\n"
                                              "audit_signing_key_file = "
                                              "\"/etc/nucleus/secrets/audit.key\"\n"
                                              "\n[pool]\n# Warm pool (docs/node.md \"Warm pool\"): off\n"
                                              "memory_budget_mib = 1024\n\n[pool.images]\ndefault = 1\n");
        CliConfig *c = NULL;
        NodeConfig *n = NULL;
        char *err = NULL;
        if (cli_config_load(cli, true, &c, &err) < 0)
                fail_msg("%s", err);
        assert_string_equal(c->auth.secrets_dir, "/root/.config/nucleus/secrets");
        if (node_config_load(node, true, &n, &err) < 0)
                fail_msg("%s", err);
        assert_string_equal(n->accel, "tcg");
        cli_config_free(c);
        node_config_free(n);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cli_defaults),  cmocka_unit_test(test_cli_file),
                cmocka_unit_test(test_cli_errors),    cmocka_unit_test(test_node),
                cmocka_unit_test(test_setup_written), cmocka_unit_test(test_cli_image_tables),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
