/* SPDX-License-Identifier: Apache-2.0 */
/*
 * nucleus run: what config.toml adds to the flags, the run's policy and pod spec, and the
 * model settings with a cheap reachability check before any pod boots.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "alloc-util.h"
#include "cli-policy.h"
#include "config.h"
#include "json-util.h"
#include "log.h"
#include "pricing.h"
#include "run-internal.h"
#include "string-util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(CliConfig *, cli_config_free);

/* ---- policy and spec ---- */

void run_defaults_done(RunDefaults *d) {
        d->profile = mfree(d->profile);
        d->image = mfree(d->image);
}

int run_defaults_load(const RunOptions *o, const char *config_file, RunDefaults *ret) {
        _cleanup_(cli_config_freep) CliConfig *cfg = NULL;
        _cleanup_free_ char *err = NULL;
        int r;

        (void) o;
        r = cli_config_load(config_file, false, &cfg, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ? err : "cannot load config.toml");
#define FROM_FILE(f) (cfg->origins[(f)].source == CONFIG_SOURCE_FILE)
        *ret = (RunDefaults){
                .profile = xstrdup(cfg->default_profile ?: "restrictive"),
                .have_max_cost = FROM_FILE(CLI_BUDGET_MAX_COST_USD),
                .max_cost_micros = cfg->budget.max_cost_usd_micros,
                .have_input_tokens = FROM_FILE(CLI_BUDGET_MAX_INPUT_TOKENS),
                .max_input_tokens = cfg->budget.max_input_tokens,
                .have_output_tokens = FROM_FILE(CLI_BUDGET_MAX_OUTPUT_TOKENS),
                .max_output_tokens = cfg->budget.max_output_tokens,
                .timeout_sec = FROM_FILE(CLI_BUDGET_TIMEOUT_SECONDS) ? cfg->budget.timeout_seconds : 0,
                .image = FROM_FILE(CLI_IMAGES_DEFAULT) ? xstrdup(cfg->images.default_image) : NULL,
        };
#undef FROM_FILE
        return 0;
}

int run_load_policy(const RunOptions *o, const RunDefaults *d, Policy **ret, PolicyForm *ret_form) {
        _cleanup_(policy_freep) Policy *p = NULL;
        const char *profile = o->profile ?: d->profile;
        int r;

        if (o->policy_file) {
                _cleanup_free_ char *err = NULL;
                r = cli_policy_file_load(o->policy_file, &p, &err);
                if (r < 0)
                        return log_error_errno(r, "%s", err);
        } else {
                r = policy_profile_new(profile, &p);
                if (r < 0) {
                        const char *const *names = policy_profile_names();
                        _cleanup_free_ char *list = strv_join((char *const *) names, ", ");
                        return log_error_errno(r, "unknown profile '%s' (known: %s)", profile, list);
                }
        }
        *ret_form = (PolicyForm){ .inline_policy = o->policy_file != NULL };

        /* --allow-command: added to the allowlist of this run's policy, which then goes inline
         * (the node records the policy it enforces in the audit log). */
        for (size_t i = 0; i < o->n_allow_commands; i++) {
                if (p->commands.unrestricted)
                        break; /* every command is already allowed; blocks still apply */
                strv_extend(&p->commands.allowed, o->allow_commands[i]);
                ret_form->inline_policy = true;
        }
        if (o->n_allow_commands > 0) {
                /* A set again, and checked as the node will. */
                _cleanup_json_ json_t *j = policy_to_json(p);
                _cleanup_(policy_freep) Policy *q = NULL;
                _cleanup_free_ char *err = NULL;
                r = policy_from_json(j, &q, &err);
                if (r < 0)
                        return log_error_errno(r, "--allow-command: %s", err ? err : "invalid policy");
                policy_free(p);
                p = TAKE_PTR(q);
        }

        /* A flag wins over config.toml; the policy file is the whole policy, so config.toml's
         * budget applies only to profiles. */
        bool have_cost = o->max_cost || (!o->policy_file && d->have_max_cost);
        if (have_cost) {
                uint64_t m = d->max_cost_micros;
                if (o->max_cost) {
                        r = pricing_parse_usd(o->max_cost, &m);
                        if (r < 0)
                                return log_error_errno(
                                        r, "--max-cost: '%s' is not a USD amount like 0.50", o->max_cost);
                }
                if (m > p->max_usd_micros)
                        ret_form->inline_policy = true; /* the node only lets overrides tighten */
                ret_form->have_max_cost = true;
                ret_form->max_cost_micros = m;
                p->max_usd_micros = m;
        }
        if (!o->policy_file && d->have_input_tokens && d->max_input_tokens != p->max_input_tokens) {
                p->max_input_tokens = d->max_input_tokens;
                ret_form->inline_policy = true;
        }
        if (!o->policy_file && d->have_output_tokens && d->max_output_tokens != p->max_output_tokens) {
                p->max_output_tokens = d->max_output_tokens;
                ret_form->inline_policy = true;
        }
        policy_normalize(p);
        *ret = TAKE_PTR(p);
        return 0;
}

int run_load_setup(const RunOptions *o, RunSetup *ret) {
        _cleanup_(run_setup_done) RunSetup s = {};
        _cleanup_free_ char *err = NULL;
        int r;

        if (o->policy_file) {
                _cleanup_(policy_freep) Policy *unused = NULL;
                _cleanup_json_ json_t *table = NULL;
                r = cli_policy_file_load_setup(o->policy_file, &unused, &table, &err);
                if (r < 0)
                        return log_error_errno(r, "%s", err);
                if (table && run_setup_from_json(&s, table, o->policy_file, &err) < 0)
                        return log_error_errno(-EINVAL, "%s", err);
        }
        for (size_t i = 0; i < o->n_setup_commands; i++)
                if (run_setup_add_command(&s, "--setup", o->setup_commands[i], &err) < 0)
                        return log_error_errno(-EINVAL, "%s", err);
        for (size_t i = 0; i < o->n_setup_hosts; i++)
                if (run_setup_add_host(&s, "--setup-host", o->setup_hosts[i], &err) < 0)
                        return log_error_errno(-EINVAL, "%s", err);
        if (strv_length(s.hosts) > 0 && json_array_size(s.commands) == 0)
                return log_error_errno(
                        -EINVAL,
                        "setup hosts are given (%s) but no setup command: add --setup \"CMD\" or [setup] "
                        "commands, or drop the hosts",
                        s.hosts[0]);
        *ret = s;
        s = (RunSetup){};
        return 0;
}

json_t *run_build_spec(
        const RunOptions *o,
        const Policy *p,
        const PolicyForm *form,
        const char *dir,
        json_t *network,
        uint64_t timeout_sec,
        uint32_t scratch_mib,
        const char *image) {
        const char *base = strrchr(dir, '/');
        base = base && base[1] ? base + 1 : "workspace";
        _cleanup_free_ char *name = xasprintf("run-%.40s", base);
        for (char *c = name; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
                        *c = (*c >= 'A' && *c <= 'Z') ? (char) (*c - 'A' + 'a') : '-';
        json_t *pol;
        if (form->inline_policy || !p->name)
                pol = json_pack("{s:o}", "inline", policy_to_json(p));
        else {
                pol = json_pack("{s:s}", "profile", p->name);
                if (form->have_max_cost)
                        json_object_set_new(
                                pol, "max_cost_usd", json_real((double) form->max_cost_micros / 1e6));
        }
        /* Held by this run's renewals (docs/api.md "Leases"): a CLI that dies without cleaning
         * up leaves a pod the node ends after its grace period. */
        json_t *spec = json_pack("{s:o}", "policy", pol);
        if (timeout_sec > 0)
                json_object_set_new(spec, "timeout_seconds", json_integer((json_int_t) timeout_sec));
        if (network)
                json_object_set(spec, "network", network);
        json_object_set_new(spec, "resources", json_pack("{s:I}", "scratch_mib", (json_int_t) scratch_mib));
        /* --image, else config.toml [images] default when set there, else the node's default. */
        if (o->image ?: image)
                json_object_set_new(spec, "image", json_string(o->image ?: image));
        /* The pod is held by this run's lease renewals from creation on (the node's default
         * grace period): a CLI that dies without cleaning up leaves nothing running. */
        json_object_set_new(spec, "lease", json_object());
        return json_pack(
                "{s:s, s:s, s:{s:s, s:{s:s}}, s:o}",
                "apiVersion",
                "nucleus/v1",
                "kind",
                "Pod",
                "metadata",
                "name",
                name,
                "labels",
                "nucleus.run",
                "true",
                "spec",
                spec);
}

/* ---- model ---- */

static const char *env_or(const char *flag, const char *env) {
        if (flag)
                return flag;
        const char *e = secure_getenv(env);
        return isempty(e) ? NULL : e;
}

int run_model_config(
        const RunOptions *o, const char *config_file, LlmConfig *ret, uint64_t *ret_in, uint64_t *ret_out) {
        const char *model = env_or(o->model, "NUCLEUS_MODEL");
        const char *provider = env_or(o->provider, "NUCLEUS_MODEL_PROVIDER");
        const char *base = env_or(o->base_url, "NUCLEUS_MODEL_BASE_URL");
        const char *keyenv = env_or(o->api_key_env, "NUCLEUS_MODEL_API_KEY_ENV");
        const char *pin = env_or(o->price_in, "NUCLEUS_MODEL_PRICE_IN");
        const char *pout = env_or(o->price_out, "NUCLEUS_MODEL_PRICE_OUT");
        bool have_cfg_prices = false;
        uint64_t cfg_in = 0, cfg_out = 0, connect_s = 0, idle_s = 0;
        LlmProvider prov;
        int r;

        _cleanup_(cli_config_freep) CliConfig *cfg = NULL;
        _cleanup_free_ char *cerr = NULL;
        r = cli_config_load(config_file, false, &cfg, &cerr);
        if (r < 0)
                return log_error_errno(r, "%s", cerr ? cerr : "cannot load config.toml");
#define FROM_FILE(f) (cfg->origins[(f)].source == CONFIG_SOURCE_FILE)
        connect_s = cfg->model.connect_timeout_seconds;
        idle_s = cfg->model.idle_timeout_seconds;
        bool file_model = FROM_FILE(CLI_MODEL_MODEL) || FROM_FILE(CLI_MODEL_PROVIDER) ||
                FROM_FILE(CLI_MODEL_BASE_URL);
        if (file_model) {
                /* A [model] section: its values (and its per-provider defaults) fill the gaps. */
                if (!provider)
                        provider = cfg->model.provider;
                if (!model && !(o->provider && !FROM_FILE(CLI_MODEL_MODEL)))
                        model = cfg->model.model;
                if (!base && FROM_FILE(CLI_MODEL_BASE_URL))
                        base = cfg->model.base_url;
                if (!keyenv && FROM_FILE(CLI_MODEL_API_KEY_ENV))
                        keyenv = cfg->model.api_key_env;
                have_cfg_prices = true;
                cfg_in = cfg->model.price_in_per_mtok_usd_micros;
                cfg_out = cfg->model.price_out_per_mtok_usd_micros;
        }
#undef FROM_FILE

        if (!model)
                return log_error_errno(
                        -ENOENT,
                        "no model configured: add a [model] section to config.toml, pass --model (and "
                        "--base-url, --provider), set NUCLEUS_MODEL, or use --script PLAN.json");
        if (provider) {
                prov = llm_provider_from_string(provider);
                if (prov < 0 || prov == LLM_PROVIDER_SCRIPT)
                        return log_error_errno(
                                -EINVAL, "--provider: '%s' is not openai or anthropic", provider);
        } else
                prov = (base && strstr(base, "anthropic")) || startswith(model, "claude")
                        ? LLM_PROVIDER_ANTHROPIC
                        : LLM_PROVIDER_OPENAI;
        bool official = !base;
        if (!base)
                base = prov == LLM_PROVIDER_ANTHROPIC ? "https://api.anthropic.com"
                                                      : "https://api.openai.com/v1";
        if (!keyenv) {
                keyenv = prov == LLM_PROVIDER_ANTHROPIC ? "ANTHROPIC_API_KEY" : "OPENAI_API_KEY";
                /* Local servers (Ollama, llama.cpp, vLLM) usually need no key. */
                if (!official && isempty(secure_getenv(keyenv)))
                        keyenv = NULL;
        }
        *ret_in = have_cfg_prices ? cfg_in : 0;
        *ret_out = have_cfg_prices ? cfg_out : 0;
        if (pin && (r = pricing_parse_usd(pin, ret_in)) < 0)
                return log_error_errno(r, "--price-in: '%s' is not a USD amount", pin);
        if (pout && (r = pricing_parse_usd(pout, ret_out)) < 0)
                return log_error_errno(r, "--price-out: '%s' is not a USD amount", pout);
        *ret = (LlmConfig){
                .provider = prov,
                .base_url = xstrdup(base),
                .model = xstrdup(model),
                .api_key_env = keyenv ? xstrdup(keyenv) : NULL,
                .connect_timeout_ms = connect_s * 1000,
                .idle_timeout_ms = idle_s * 1000,
                .stream = true,
        };
        return 0;
}

int run_model_reachable(const char *base_url, char **reterr) {
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *curl = curl_easy_init();
        if (!curl)
                return log_oom();
        (void) curl_easy_setopt(curl, CURLOPT_URL, base_url);
        (void) curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void) curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(curl, CURLOPT_CONNECT_ONLY, 1L);
        (void) curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) RUN_MODEL_PROBE_TIMEOUT_MS);
        (void) curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        CURLcode rc = curl_easy_perform(curl);
        curl_easy_cleanup(curl);
        if (rc == CURLE_OK)
                return 0;
        _cleanup_free_ char *vis = string_make_visible(base_url),
                            *why = string_make_visible(errbuf[0] ? errbuf : curl_easy_strerror(rc));
        *reterr = xasprintf(
                "the model endpoint %s is not reachable: %s (check --base-url / [model] base_url; no pod "
                "was "
                "created)",
                vis,
                why);
        return -EHOSTUNREACH;
}
