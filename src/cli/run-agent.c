/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The external agent adapters of `nucleus run` (see run-agent.h). Verified flags are in
 * docs/run.md with the versions tested.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent-workspace.h"
#include "alloc-util.h"
#include "cli-files.h"
#include "cli-node.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "run-agent.h"
#include "string-util.h"
#include "words.h"

#define RUN_AGENT_MAX_LINE (4U * 1024U * 1024U)
#define RUN_AGENT_MAX_TEXT (1U * 1024U * 1024U)

static const char *const run_agent_kind_table[_RUN_AGENT_KIND_MAX] = {
        [RUN_AGENT_CMD] = "cmd",
        [RUN_AGENT_CLAUDE] = "claude",
        [RUN_AGENT_CODEX] = "codex",
        [RUN_AGENT_MCP] = "mcp",
};

RunAgentKind run_agent_kind_from_string(const char *s) {
        for (RunAgentKind k = RUN_AGENT_CLAUDE; k < _RUN_AGENT_KIND_MAX; k++)
                if (streq_ptr(s, run_agent_kind_table[k]))
                        return k;
        return _RUN_AGENT_KIND_INVALID;
}

const char *run_agent_kind_to_string(RunAgentKind k) {
        return k >= 0 && k < _RUN_AGENT_KIND_MAX ? run_agent_kind_table[k] : NULL;
}

void run_agent_result_done(RunAgentResult *r) {
        if (r)
                r->final_text = mfree(r->final_text);
}

static const char *program_name(RunAgentKind kind, char *const *argv) {
        return kind == RUN_AGENT_CLAUDE   ? "claude"
                : kind == RUN_AGENT_CODEX ? "codex"
                                          : (argv ? argv[0] : NULL);
}

/* Claude Code and Codex: $NUCLEUS_CLAUDE_PATH / $NUCLEUS_CODEX_PATH, else the user's PATH
 * (npm installs them anywhere). Other agents: a path, or a name in the system directories. */
static char *find_agent(RunAgentKind kind, char *const *argv) {
        const char *name = program_name(kind, argv);
        char *found = NULL;
        if (!name)
                return NULL;
        if (kind == RUN_AGENT_CLAUDE || kind == RUN_AGENT_CODEX) {
                const char *e = secure_getenv(
                        kind == RUN_AGENT_CLAUDE ? "NUCLEUS_CLAUDE_PATH" : "NUCLEUS_CODEX_PATH");
                if (!isempty(e))
                        return access(e, X_OK) == 0 ? xstrdup(e) : NULL;
                return cli_find_program(name, &found) >= 0 ? found : NULL;
        }
        if (strchr(name, '/'))
                return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
        return agent_find_program(name);
}

int run_agent_check(RunAgentKind kind, char *const *argv, bool have_model, LlmProvider provider, char **reterr) {
        const char *name = program_name(kind, argv);
        _cleanup_free_ char *prog = find_agent(kind, argv);
        if (!prog) {
                _cleanup_free_ char *vis = string_make_visible(name ? name : "(none)");
                *reterr = xasprintf(
                        "the agent program '%s' was not found on PATH%s",
                        vis,
                        kind == RUN_AGENT_CLAUDE          ? " (npm install -g @anthropic-ai/claude-code)"
                                : kind == RUN_AGENT_CODEX ? " (npm install -g @openai/codex)"
                                                          : "");
                return -ENOENT;
        }
        if ((kind == RUN_AGENT_CLAUDE || kind == RUN_AGENT_CODEX) && !have_model) {
                *reterr = xasprintf(
                        "--agent %s needs a model for the run's gateway: add a [model] section to "
                        "config.toml "
                        "or pass --model, --provider and --base-url",
                        run_agent_kind_to_string(kind));
                return -EINVAL;
        }
        if (kind == RUN_AGENT_CLAUDE && have_model && provider != LLM_PROVIDER_ANTHROPIC) {
                *reterr = xstrdup("--agent claude speaks the Anthropic Messages API: configure an anthropic "
                                  "model "
                                  "(--provider anthropic)");
                return -EINVAL;
        }
        if (kind == RUN_AGENT_CODEX && have_model && provider != LLM_PROVIDER_OPENAI) {
                *reterr = xstrdup("--agent codex speaks the OpenAI Responses API: configure an openai model "
                                  "(--provider openai)");
                return -EINVAL;
        }
        return 0;
}

/* A TOML basic string (Codex takes its -c overrides as TOML values). */
static char *toml_quote(const char *s) {
        size_t n = strlen(s);
        char *out = xnew(char, n * 6 + 3), *p = out;
        *p++ = '"';
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                if (*c == '"' || *c == '\\') {
                        *p++ = '\\';
                        *p++ = (char) *c;
                } else if (*c < 0x20 || *c == 0x7f)
                        p += sprintf(p, "\\u%04x", *c);
                else
                        *p++ = (char) *c;
        }
        *p++ = '"';
        *p = 0;
        return out;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) (flag == FTW_DP ? rmdir(path) : unlink(path));
        return 0;
}

/* Removes the agent's throwaway tree (it may have written anything into its home). */
static void remove_tree(const char *dir) {
        if (dir)
                (void) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

void run_agent_parse_line(RunAgentKind kind, const char *line, size_t n, char **text) {
        _cleanup_json_ json_t *j = NULL;
        if (json_parse_strict(line, n, RUN_AGENT_MAX_LINE, &j, NULL) < 0 || !json_is_object(j))
                return;
        const char *type = json_string_value(json_object_get(j, "type"));
        const char *t = NULL;
        if (kind == RUN_AGENT_CLAUDE) {
                /* stream-json: {"type":"result","result":"..."} ends the run; assistant messages
                 * carry text blocks on the way. */
                if (streq_ptr(type, "result"))
                        t = json_string_value(json_object_get(j, "result"));
                else if (streq_ptr(type, "assistant")) {
                        json_t *b;
                        size_t i;
                        json_array_foreach(json_object_get(json_object_get(j, "message"), "content"), i, b)
                                if (streq_ptr(json_string_value(json_object_get(b, "type")), "text"))
                                        t = json_string_value(json_object_get(b, "text"));
                }
        } else if (kind == RUN_AGENT_CODEX) {
                /* --json: {"type":"item.completed","item":{"type":"agent_message","text":"..."}} */
                json_t *item = json_object_get(j, "item");
                if (streq_ptr(type, "item.completed") &&
                    streq_ptr(json_string_value(json_object_get(item, "type")), "agent_message"))
                        t = json_string_value(json_object_get(item, "text"));
        }
        if (t && strlen(t) <= RUN_AGENT_MAX_TEXT) {
                free(*text);
                *text = xstrdup(t);
        }
}

static char *mcp_env_tools(char *const *ops) {
        return strv_join((char **) ops, ",");
}

/* Claude Code and generic agents: {"mcpServers":{"nucleus":{stdio nucleus-mcp for the pod}}}. */
static int write_mcp_json(const RunAgentSpec *s, const char *mcp, const char *path) {
        _cleanup_free_ char *tools = mcp_env_tools(s->ops);
        _cleanup_json_ json_t *cfg = json_pack(
                "{s:{s:{s:s, s:s, s:[s, s], s:{s:s, s:s, s:s}}}}",
                "mcpServers",
                "nucleus",
                "type",
                "stdio",
                "command",
                mcp,
                "args",
                "--pod",
                s->pod,
                "env",
                "NUCLEUS_NODE_URL",
                s->node->url,
                "NUCLEUS_NODE_KEY_FILE",
                s->node->key_file,
                "NUCLEUS_MCP_TOOLS",
                tools);
        if (!cfg)
                return -ENOMEM;
        _cleanup_free_ char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
        return write_file_atomic_at(AT_FDCWD, path, text, strlen(text), 0600);
}

static void env_add(char ***env, const char *k, const char *v) {
        if (v)
                strv_consume(env, xasprintf("%s=%s", k, v));
}

static int build_command(
        const RunAgentSpec *s, const char *tmp, const char *home, char ***ret_argv, char ***ret_env) {
        _cleanup_strv_free_ char **argv = NULL, **env = NULL;
        _cleanup_free_ char *mcp = NULL, *cfgpath = xasprintf("%s/mcp.json", tmp), *prog = NULL;
        int r;

        r = cli_find_helper("nucleus-mcp", "NUCLEUS_MCP_PATH", "../mcp", &mcp);
        if (r < 0)
                return log_error_errno(r, "nucleus-mcp not found (set NUCLEUS_MCP_PATH)");
        prog = find_agent(s->kind, s->argv);
        if (!prog)
                return log_error_errno(-ENOENT, "the agent program was not found");

        /* Built from nothing: no variable of ours (no node URL, no key path, no provider
         * key) reaches the agent except the ones set here. */
        env_add(&env, "PATH", "/usr/local/bin:/usr/bin:/bin");
        env_add(&env, "HOME", home);
        env_add(&env, "TMPDIR", tmp);
        env_add(&env, "LANG", "C.UTF-8");
        env_add(&env, "TERM", "dumb");
        env_add(&env, "NO_COLOR", "1");

        switch (s->kind) {
        case RUN_AGENT_CLAUDE: {
                r = write_mcp_json(s, mcp, cfgpath);
                if (r < 0)
                        return log_error_errno(r, "cannot write %s: %m", cfgpath);
                _cleanup_strv_free_ char **allowed = NULL;
                STRV_FOREACH(o, s->ops)
                        strv_consume(&allowed, xasprintf("mcp__nucleus__%s", *o));
                _cleanup_free_ char *allowed_s = strv_join(allowed, ",");
                _cleanup_free_ char *turns = xasprintf("%u", s->max_turns);
                const char *const a[] = { prog,
                                          "-p",
                                          "--output-format",
                                          "stream-json",
                                          "--verbose",
                                          "--max-turns",
                                          turns,
                                          "--mcp-config",
                                          cfgpath,
                                          "--strict-mcp-config",
                                          /* every built-in tool off: only the pod's remain */
                                          "--tools",
                                          "",
                                          "--allowedTools",
                                          allowed_s,
                                          "--model",
                                          s->model,
                                          NULL };
                for (size_t i = 0; a[i]; i++)
                        strv_extend(&argv, a[i]);
                env_add(&env, "ANTHROPIC_BASE_URL", s->gateway_url);
                env_add(&env, "ANTHROPIC_API_KEY", s->token);
                /* Its background calls use the same (priced) model. */
                env_add(&env, "ANTHROPIC_SMALL_FAST_MODEL", s->model);
                env_add(&env, "ANTHROPIC_DEFAULT_HAIKU_MODEL", s->model);
                env_add(&env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
                env_add(&env, "DISABLE_AUTOUPDATER", "1");
                env_add(&env, "DISABLE_TELEMETRY", "1");
                env_add(&env, "DISABLE_ERROR_REPORTING", "1");
                break;
        }
        case RUN_AGENT_CODEX: {
                _cleanup_free_ char *tools = mcp_env_tools(s->ops);
                _cleanup_free_ char *q_mcp = toml_quote(mcp), *q_pod = toml_quote(s->pod),
                                    *q_url = toml_quote(s->node->url),
                                    *q_key = toml_quote(s->node->key_file), *q_tools = toml_quote(tools);
                _cleanup_free_ char *base = xasprintf("%s/v1", s->gateway_url);
                _cleanup_free_ char *q_base = toml_quote(base);
                _cleanup_free_ char *provider = xasprintf(
                        "model_providers.nucleus={name=\"nucleus\", base_url=%s, wire_api=\"responses\", "
                        "env_key=\"NUCLEUS_MODEL_TOKEN\"}",
                        q_base);
                _cleanup_free_ char *server = xasprintf(
                        "mcp_servers.nucleus={command=%s, args=[\"--pod\", %s], env={NUCLEUS_NODE_URL=%s, "
                        "NUCLEUS_NODE_KEY_FILE=%s, NUCLEUS_MCP_TOOLS=%s}, "
                        "default_tools_approval_mode=\"approve\"}",
                        q_mcp,
                        q_pod,
                        q_url,
                        q_key,
                        q_tools);
                const char *const a[] = { prog,
                                          "exec",
                                          "--skip-git-repo-check",
                                          "--ephemeral",
                                          "--json",
                                          "-m",
                                          s->model,
                                          "-c",
                                          "model_provider=\"nucleus\"",
                                          "-c",
                                          provider,
                                          "-c",
                                          server,
                                          /* its own tools that act on the host, run
                                           * elsewhere or leave through the provider: off
                                           * (each key checked against Codex 0.171.0, which
                                           * names the keys it ignores) */
                                          "-c",
                                          "features.shell_tool=false",
                                          "-c",
                                          "features.unified_exec=false",
                                          "-c",
                                          "features.apply_patch_freeform=false",
                                          "-c",
                                          "features.view_image=false",
                                          "-c",
                                          "features.multi_agent=false",
                                          "-c",
                                          "features.goals=false",
                                          "-c",
                                          "web_search=\"disabled\"",
                                          /* and if one slipped through: no writes, no network */
                                          "-c",
                                          "sandbox_mode=\"read-only\"",
                                          "-c",
                                          "approval_policy=\"never\"",
                                          NULL };
                for (size_t i = 0; a[i]; i++)
                        strv_extend(&argv, a[i]);
                _cleanup_free_ char *codex_home = xasprintf("%s/.codex", home);
                if (mkdir(codex_home, 0700) < 0)
                        return log_error_errno(-errno, "cannot create %s: %m", codex_home);
                env_add(&env, "CODEX_HOME", codex_home);
                env_add(&env, "NUCLEUS_MODEL_TOKEN", s->token);
                break;
        }
        case RUN_AGENT_CMD:
        case RUN_AGENT_MCP:
                r = write_mcp_json(s, mcp, cfgpath);
                if (r < 0)
                        return log_error_errno(r, "cannot write %s: %m", cfgpath);
                strv_extend(&argv, prog);
                for (size_t i = 1; s->argv && s->argv[i]; i++)
                        strv_extend(&argv, s->argv[i]);
                env_add(&env, "NUCLEUS_MCP_CONFIG", cfgpath);
                if (s->gateway_url) {
                        _cleanup_free_ char *v1 = xasprintf("%s/v1", s->gateway_url);
                        if (s->provider == LLM_PROVIDER_ANTHROPIC) {
                                env_add(&env, "ANTHROPIC_BASE_URL", s->gateway_url);
                                env_add(&env, "ANTHROPIC_API_KEY", s->token);
                        } else {
                                env_add(&env, "OPENAI_BASE_URL", v1);
                                env_add(&env, "OPENAI_API_KEY", s->token);
                        }
                        env_add(&env, "NUCLEUS_MODEL", s->model);
                }
                break;
        default:
                return -EINVAL;
        }
        STRV_FOREACH(e, s->extra)
                strv_extend(&argv, *e);
        strv_extend(&argv, s->task);
        *ret_argv = TAKE_PTR(argv);
        *ret_env = TAKE_PTR(env);
        return 0;
}

int run_agent_external(const RunAgentSpec *s, RunAgentResult *ret) {
        _cleanup_strv_free_ char **argv = NULL, **envp = NULL;
        _cleanup_free_ char *tmp = NULL, *home = NULL, *work = NULL, *text = NULL, *line = NULL;
        size_t line_len = 0;
        int pipefd[2], r;

        const char *td = secure_getenv("TMPDIR");
        tmp = xasprintf("%s/nucleus-agent-XXXXXX", isempty(td) ? "/tmp" : td);
        if (!mkdtemp(tmp))
                return log_error_errno(-errno, "cannot create a temporary directory: %m");
        home = xasprintf("%s/home", tmp);
        work = xasprintf("%s/work", tmp);
        if (mkdir(home, 0700) < 0 || mkdir(work, 0700) < 0) {
                r = log_error_errno(-errno, "cannot create the agent's directories: %m");
                goto out;
        }
        r = build_command(s, tmp, home, &argv, &envp);
        if (r < 0)
                goto out;
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                r = log_error_errno(-errno, "pipe: %m");
                goto out;
        }
        {
                _cleanup_free_ char *shown = words_join(argv);
                fprintf(stderr, "[agent] %s\n", shown);
        }
        pid_t pid = fork();
        if (pid < 0) {
                r = -errno;
                safe_close(pipefd[0]);
                safe_close(pipefd[1]);
                log_error_errno(r, "fork: %m");
                goto out;
        }
        if (pid == 0) {
                /* The agent works in an empty directory: the project is reachable only through
                 * the pod. */
                int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (nullfd < 0 || dup2(nullfd, STDIN_FILENO) < 0 || dup2(pipefd[1], STDOUT_FILENO) < 0 ||
                    chdir(work) < 0)
                        _exit(127);
                (void) fd_close_all_from(3, NULL, 0);
                (void) setpgid(0, 0);
                execve(argv[0], argv, envp);
                fprintf(stderr, "nucleus run: cannot execute %s: %s\n", argv[0], strerror(errno));
                _exit(127);
        }
        safe_close(pipefd[1]);

        /* Read what it prints: parsed (Claude Code, Codex) or passed on (generic agents: to
         * stdout, or to stderr when stdout carries the JSON document). */
        FILE *pass = s->json_output ? stderr : stdout;
        bool killed = false;
        for (;;) {
                char buf[8192];
                if (s->interrupt && *s->interrupt && !killed) {
                        (void) kill(-pid, SIGTERM);
                        killed = true;
                }
                ssize_t k = read(pipefd[0], buf, sizeof(buf));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                if (s->kind == RUN_AGENT_CMD || s->kind == RUN_AGENT_MCP) {
                        (void) fwrite(buf, 1, (size_t) k, pass);
                        (void) fflush(pass);
                        /* The last 64 KiB are the run's text. */
                        size_t old = text ? strlen(text) : 0;
                        text = xrealloc(text, old + (size_t) k + 1);
                        memcpy(text + old, buf, (size_t) k);
                        text[old + (size_t) k] = 0;
                        if (old + (size_t) k > 65536) {
                                size_t keep = 65536;
                                memmove(text, text + old + (size_t) k - keep, keep + 1);
                        }
                        continue;
                }
                for (ssize_t i = 0; i < k; i++) {
                        if (buf[i] != '\n') {
                                if (line_len < RUN_AGENT_MAX_LINE) {
                                        line = xrealloc(line, line_len + 2);
                                        line[line_len++] = buf[i];
                                }
                                continue;
                        }
                        if (line) {
                                line[line_len] = 0;
                                run_agent_parse_line(s->kind, line, line_len, &text);
                        }
                        line_len = 0;
                }
        }
        if (line && line_len > 0) {
                line[line_len] = 0;
                run_agent_parse_line(s->kind, line, line_len, &text);
        }
        safe_close(pipefd[0]);

        int status = 0;
        for (;;) {
                if (waitpid(pid, &status, 0) >= 0)
                        break;
                if (errno != EINTR) {
                        status = 0;
                        break;
                }
                if (s->interrupt && *s->interrupt)
                        (void) kill(-pid, SIGTERM);
        }
        ret->exit_status = WIFEXITED(status) ? WEXITSTATUS(status)
                                             : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        if (text && s->kind != RUN_AGENT_CMD && s->kind != RUN_AGENT_MCP) {
                _cleanup_free_ char *vis = string_make_visible(text);
                if (!s->json_output && !isempty(vis))
                        printf("%s\n", vis);
        }
        ret->final_text = text ? TAKE_PTR(text) : xstrdup("");
        r = 0;
out:
        remove_tree(tmp);
        return r;
}
