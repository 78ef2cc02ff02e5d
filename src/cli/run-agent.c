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
#include <limits.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent-workspace.h"
#include "alloc-util.h"
#include "cli-files.h"
#include "client-paths.h"
#include "cli-node.h"
#include "fd-util.h"
#include "json-util.h"
#include "log.h"
#include "process-util.h"
#include "run-agent.h"
#include "secrets.h"
#include "string-util.h"
#include "words.h"

#define RUN_AGENT_MAX_LINE (4U * 1024U * 1024U)
/* Inside the sandbox (docs/run.md, "Confinement"). */
#define RUN_AGENT_HOME "/home/agent"
#define RUN_AGENT_UID 65534 /* nobody: the agent's user when nucleus run is root */
#define RUN_AGENT_WORK "/work"
#define RUN_AGENT_SOCKETS "/run/nucleus"
#define RUN_AGENT_MCP_CONFIG RUN_AGENT_HOME "/.nucleus-mcp.json"
#define RUN_AGENT_MCP_SOCKET RUN_AGENT_SOCKETS "/mcp.sock"
#define RUN_AGENT_GATEWAY_SOCKET RUN_AGENT_SOCKETS "/gateway.sock"
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

/* The length of the longest prefix of s that does not end inside a UTF-8 sequence (at most 3
 * bytes are held back). */
static size_t utf8_whole_prefix(const char *s, size_t n) {
        for (size_t back = 1; back <= 3 && back <= n; back++) {
                unsigned char c = (unsigned char) s[n - back];
                if (c < 0x80)
                        return n;
                if (c >= 0xc0) {
                        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
                        return need > back ? n - back : n;
                }
        }
        return n;
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

/* Claude Code and generic agents: {"mcpServers":{"nucleus":{...}}}. The server the agent
 * starts is a socat bridge to the pod's MCP server, which runs outside the sandbox with the
 * node credential: nothing of it enters. */
static int write_mcp_json(const char *path) {
        _cleanup_json_ json_t *cfg = json_pack(
                "{s:{s:{s:s, s:s, s:[s, s]}}}",
                "mcpServers",
                "nucleus",
                "type",
                "stdio",
                "command",
                "/usr/bin/socat",
                "args",
                "STDIO",
                "UNIX-CONNECT:" RUN_AGENT_MCP_SOCKET);
        if (!cfg)
                return -ENOMEM;
        _cleanup_free_ char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
        return write_file_atomic_at(AT_FDCWD, path, text, strlen(text), 0644);
}

static void env_add(char ***env, const char *k, const char *v) {
        if (v)
                strv_consume(env, xasprintf("%s=%s", k, v));
}

/* The agent's command line and environment as seen inside the sandbox; its MCP
 * configuration is written to cfgpath (bound read-only at RUN_AGENT_MCP_CONFIG). */
static int build_command(const RunAgentSpec *s, const char *cfgpath, char ***ret_argv, char ***ret_env) {
        _cleanup_strv_free_ char **argv = NULL, **env = NULL;
        _cleanup_free_ char *prog = NULL;
        int r;

        prog = find_agent(s->kind, s->argv);
        if (!prog)
                return log_error_errno(-ENOENT, "the agent program was not found");

        /* Built from nothing: no variable of ours (no node URL, no key path, no provider
         * key) reaches the agent except the ones set here. */
        env_add(&env, "PATH", "/usr/local/bin:/usr/bin:/bin");
        env_add(&env, "HOME", RUN_AGENT_HOME);
        env_add(&env, "TMPDIR", "/tmp");
        env_add(&env, "LANG", "C.UTF-8");
        env_add(&env, "TERM", "dumb");
        env_add(&env, "NO_COLOR", "1");

        /* Every agent gets the file (Codex takes the same server in its -c overrides). */
        r = write_mcp_json(cfgpath);
        if (r < 0)
                return log_error_errno(r, "cannot write %s: %m", cfgpath);

        switch (s->kind) {
        case RUN_AGENT_CLAUDE: {
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
                                          RUN_AGENT_MCP_CONFIG,
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
                _cleanup_free_ char *base = xasprintf("%s/v1", s->gateway_url);
                _cleanup_free_ char *q_base = toml_quote(base);
                _cleanup_free_ char *provider = xasprintf(
                        "model_providers.nucleus={name=\"nucleus\", base_url=%s, wire_api=\"responses\", "
                        "env_key=\"NUCLEUS_MODEL_TOKEN\"}",
                        q_base);
                _cleanup_free_ char *server = xasprintf(
                        "mcp_servers.nucleus={command=\"/usr/bin/socat\", args=[\"STDIO\", "
                        "\"UNIX-CONNECT:%s\"], "
                        "default_tools_approval_mode=\"approve\"}",
                        RUN_AGENT_MCP_SOCKET);
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
                                          /* it would ask a user nobody is there to answer */
                                          "-c",
                                          "tools.experimental_request_user_input={enabled=false}",
                                          /* and if one slipped through: no writes, no network */
                                          "-c",
                                          "sandbox_mode=\"read-only\"",
                                          "-c",
                                          "approval_policy=\"never\"",
                                          NULL };
                for (size_t i = 0; a[i]; i++)
                        strv_extend(&argv, a[i]);
                env_add(&env, "CODEX_HOME", RUN_AGENT_HOME "/.codex");
                env_add(&env, "NUCLEUS_MODEL_TOKEN", s->token);
                break;
        }
        case RUN_AGENT_CMD:
        case RUN_AGENT_MCP:
                strv_extend(&argv, prog);
                for (size_t i = 1; s->argv && s->argv[i]; i++)
                        strv_extend(&argv, s->argv[i]);
                env_add(&env, "NUCLEUS_MCP_CONFIG", RUN_AGENT_MCP_CONFIG);
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

/* A seccomp filter for the agent (bwrap --seccomp): kernel interfaces an agent never needs
 * and that widen the attack surface (keys, BPF, perf, userfaultfd, ptrace, module and mount
 * calls, new namespaces) fail with EPERM. Returns a memfd (O_CLOEXEC) holding the BPF
 * program, or <0. */
static int seccomp_program_fd(void) {
        static const int denied[] = {
                SCMP_SYS(add_key),
                SCMP_SYS(keyctl),
                SCMP_SYS(request_key),
                SCMP_SYS(bpf),
                SCMP_SYS(perf_event_open),
                SCMP_SYS(userfaultfd),
                SCMP_SYS(ptrace),
                SCMP_SYS(process_vm_readv),
                SCMP_SYS(process_vm_writev),
                SCMP_SYS(kexec_load),
                SCMP_SYS(init_module),
                SCMP_SYS(finit_module),
                SCMP_SYS(delete_module),
                SCMP_SYS(mount),
                SCMP_SYS(umount2),
                SCMP_SYS(pivot_root),
                SCMP_SYS(swapon),
                SCMP_SYS(swapoff),
                SCMP_SYS(reboot),
                SCMP_SYS(setns),
                SCMP_SYS(unshare),
                SCMP_SYS(open_by_handle_at),
                SCMP_SYS(name_to_handle_at),
                SCMP_SYS(acct),
                SCMP_SYS(syslog),
                SCMP_SYS(quotactl),
                SCMP_SYS(fsopen),
                SCMP_SYS(fsmount),
                SCMP_SYS(move_mount),
                SCMP_SYS(open_tree),
        };
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
        int r = 0, fd = -EBADF;

        if (!ctx)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(denied) && r >= 0; i++)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), denied[i], 0);
        /* No new user namespace through clone(); clone3 hides its flags from seccomp: ENOSYS
         * makes libc fall back to clone. */
        if (r >= 0)
                r = seccomp_rule_add(
                        ctx,
                        SCMP_ACT_ERRNO(EPERM),
                        SCMP_SYS(clone),
                        1,
                        SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
        if (r >= 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (r >= 0) {
                fd = memfd_create("nucleus-agent-seccomp", MFD_CLOEXEC);
                if (fd < 0)
                        r = -errno;
        }
        if (r >= 0)
                r = seccomp_export_bpf(ctx, fd);
        if (r >= 0 && lseek(fd, 0, SEEK_SET) < 0)
                r = -errno;
        seccomp_release(ctx);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        return fd;
}

/* socat takes addresses as "TYPE:arg,opt,..." strings: a path given to it may hold none of
 * its separators. */
static bool socat_safe(const char *s) {
        return s && !strpbrk(s, ",:!\\'\" \t\n{}[]");
}

static int spawn_bridge(char *const argv[], char *const envp[], PidRef *ret) {
        _cleanup_close_ int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nullfd < 0)
                return -errno;
        return spawn_argv(argv, envp, nullfd, nullfd, STDERR_FILENO, ret);
}

static int wait_for_socket(const char *path) {
        for (unsigned i = 0; i < 400; i++) {
                struct stat st;
                if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
                        return 0;
                (void) usleep(25 * 1000);
        }
        return -ETIMEDOUT;
}

/* What to bind for the agent program: an npm installation's node_modules (the program needs
 * its package and its platform package), else the program file alone. */
static char *program_root(const char *prog) {
        char real[PATH_MAX];
        if (!realpath(prog, real))
                return NULL;
        char *nm = strstr(real, "/node_modules/");
        if (nm)
                nm[strlen("/node_modules")] = 0;
        return xstrdup(real);
}

static void bind_ro(char ***a, const char *src, const char *dst) {
        strv_extend(a, "--ro-bind");
        strv_extend(a, src);
        strv_extend(a, dst);
}

/* bwrap around the agent (docs/run.md, "Confinement"). */
static int
        confine(const RunAgentSpec *s,
                const char *tmp,
                const char *cfgpath,
                char **inner,
                int seccomp_fd,
                int program_fd,
                char ***ret) {
        _cleanup_strv_free_ char **a = NULL;
        _cleanup_free_ char *bwrap = NULL, *sockets = xasprintf("%s/run", tmp),
                            *fdnum = xasprintf("%d", seccomp_fd);
        static const char *const etc[] = { "/etc/passwd",       "/etc/group",           "/etc/nsswitch.conf",
                                           "/etc/ssl",          "/etc/ca-certificates", "/etc/localtime",
                                           "/etc/alternatives", "/etc/ld.so.cache",     NULL };

        /* Never an unconfined agent: without bubblewrap (macOS has none) the run stops here. */
        if (cli_find_program("bwrap", &bwrap) < 0)
                return log_error_errno(
                        -ENOENT,
                        "the agent cannot be confined on this host, so it is not started: bubblewrap "
                        "(bwrap) "
                        "is required (scripts/install-deps); on macOS run nucleus run inside the Lima VM "
                        "('limactl shell nucleus'), or use the built-in loop (no --agent)");
        const char *const base[] = { bwrap,
                                     "--unshare-all",
                                     "--die-with-parent",
                                     "--new-session",
                                     "--cap-drop",
                                     "ALL",
                                     "--ro-bind",
                                     "/usr",
                                     "/usr",
                                     "--symlink",
                                     "usr/bin",
                                     "/bin",
                                     "--symlink",
                                     "usr/sbin",
                                     "/sbin",
                                     "--symlink",
                                     "usr/lib",
                                     "/lib",
                                     "--symlink",
                                     "usr/lib64",
                                     "/lib64",
                                     "--proc",
                                     "/proc",
                                     "--dev",
                                     "/dev",
                                     "--tmpfs",
                                     "/tmp",
                                     "--tmpfs",
                                     "/home",
                                     "--dir",
                                     RUN_AGENT_HOME,
                                     "--dir",
                                     RUN_AGENT_HOME "/.codex",
                                     "--dir",
                                     RUN_AGENT_WORK,
                                     "--chdir",
                                     RUN_AGENT_WORK,
                                     "--seccomp",
                                     fdnum,
                                     NULL };
        for (size_t i = 0; base[i]; i++)
                strv_extend(&a, base[i]);
        for (size_t i = 0; etc[i]; i++) {
                strv_extend(&a, "--ro-bind-try");
                strv_extend(&a, etc[i]);
                strv_extend(&a, etc[i]);
        }
        bind_ro(&a, sockets, RUN_AGENT_SOCKETS);
        bind_ro(&a, cfgpath, RUN_AGENT_MCP_CONFIG);
        /* The program (an npm installation's node_modules, or the file itself): read-only.
         * Nothing else of the host, not even files its arguments name. */
        if (program_fd >= 0) {
                /* A single-file program is copied in (the unprivileged sandbox need not be
                 * able to read its directory). */
                _cleanup_free_ char *num = xasprintf("%d", program_fd);
                strv_extend(&a, "--perms");
                strv_extend(&a, "0555");
                strv_extend(&a, "--file");
                strv_extend(&a, num);
                strv_extend(&a, inner[0]);
        } else if (inner[0][0] == '/' && !startswith(inner[0], "/usr/")) {
                _cleanup_free_ char *root = program_root(inner[0]);
                if (!root)
                        return log_error_errno(-ENOENT, "cannot resolve the agent program %s", inner[0]);
                bind_ro(&a, root, root);
                /* Started by the name it was found under (a symlink outside that tree). */
                size_t rl = strlen(root);
                if (!(strncmp(inner[0], root, rl) == 0 && inner[0][rl] == '/') && !streq(inner[0], root)) {
                        char real[PATH_MAX];
                        if (realpath(inner[0], real))
                                bind_ro(&a, real, inner[0]);
                }
        }
        strv_extend(&a, "--");
        if (s->gateway_url) {
                /* Inside: a loopback port bridged to the gateway's socket, then the agent. The
                 * script is constant; the port and the agent's words are its arguments. */
                const char *port = strrchr(s->gateway_url, ':');
                strv_extend(&a, "/bin/sh");
                strv_extend(&a, "-c");
                strv_extend(
                        &a,
                        "/usr/bin/socat TCP-LISTEN:\"$1\",bind=127.0.0.1,fork,reuseaddr "
                        "UNIX-CONNECT:" RUN_AGENT_GATEWAY_SOCKET " & shift; exec \"$@\"");
                strv_extend(&a, "nucleus-agent");
                strv_extend(&a, port ? port + 1 : "0");
        }
        STRV_FOREACH(w, inner)
                strv_extend(&a, *w);
        *ret = TAKE_PTR(a);
        return 0;
}

/* A credential scoped to the pod for nucleus-mcp (docs/api.md "Scoped credentials"): minted
 * here with the node key, written 0600 into dir (private, outside the agent's sandbox). The
 * MCP servers sign with it alone: they never read the node key, and what they can do is what
 * the pod's routes allow. The credential expires with the pod. */
static int mint_pod_credential(const RunAgentSpec *s, const char *dir, char **ret_path) {
        _cleanup_client_free_ NucleusClient *c = NULL;
        _cleanup_client_error_ ClientError e = {};
        _cleanup_free_ char *err = NULL, *route = xasprintf("/v1/pods/%s/credentials", s->pod),
                            *file = xasprintf("%s/pod.credential", dir);
        _cleanup_json_ json_t *body = json_pack("{s:s}", "scope", "pod"), *ans = NULL;
        int r = client_open(s->node, &c, &err);
        if (r < 0)
                return log_error_errno(r, "%s", err ?: "cannot open the node client");
        r = client_call_json(c, "POST", route, body, &ans, &e);
        if (r < 0) {
                _cleanup_free_ char *d = client_error_describe(&e);
                return log_error_errno(r, "cannot mint a credential for pod %s: %s", s->pod, d);
        }
        _cleanup_(erase_and_freep) char *text = json_dumps(ans, JSON_COMPACT);
        json_t *sv = json_object_get(ans, "secret");
        if (sv)
                (void) json_string_set(sv, "");
        if (!text)
                return log_oom();
        r = secret_write_new(file, text, strlen(text));
        if (r < 0)
                return log_error_errno(r, "cannot write the pod credential %s: %m", file);
        *ret_path = TAKE_PTR(file);
        return 0;
}

int run_agent_external(const RunAgentSpec *s, RunAgentResult *ret) {
        _cleanup_strv_free_ char **inner = NULL, **argv = NULL, **envp = NULL;
        _cleanup_free_ char *tmp = NULL, *sockets = NULL, *cfgpath = NULL, *text = NULL, *line = NULL,
                            *mcp = NULL, *credtmp = NULL, *cred = NULL;
        _cleanup_close_ int seccomp_fd = -EBADF, program_fd = -EBADF;
        PidRef mcp_bridge = PIDREF_NULL, gw_bridge = PIDREF_NULL;
        /* As root, the agent runs as nobody: an unprivileged user namespace of its own. */
        bool drop = geteuid() == 0;
        const uid_t agent_uid = drop ? RUN_AGENT_UID : geteuid();
        const gid_t agent_gid = drop ? RUN_AGENT_UID : getegid();
        _cleanup_free_ char *owner = xasprintf(",user=%u,group=%u", (unsigned) agent_uid, (unsigned) agent_gid);
        size_t line_len = 0;
        int pipefd[2], r;

        const char *td = secure_getenv("TMPDIR");
        tmp = xasprintf("%s/nucleus-agent-XXXXXX", isempty(td) ? "/tmp" : td);
        if (!mkdtemp(tmp))
                return log_error_errno(-errno, "cannot create a temporary directory: %m");
        /* Ours alone (0700, never the agent's): the pod credential of the MCP servers. */
        credtmp = xasprintf("%s/nucleus-cred-XXXXXX", isempty(td) ? "/tmp" : td);
        if (!mkdtemp(credtmp)) {
                r = log_error_errno(-errno, "cannot create a temporary directory: %m");
                credtmp = mfree(credtmp);
                goto out;
        }
        sockets = xasprintf("%s/run", tmp);
        cfgpath = xasprintf("%s/mcp.json", tmp);
        if (mkdir(sockets, 0700) < 0 ||
            (drop && (chown(tmp, agent_uid, agent_gid) < 0 || chown(sockets, agent_uid, agent_gid) < 0))) {
                r = log_error_errno(-errno, "cannot create the agent's directories: %m");
                goto out;
        }
        r = cli_find_helper("nucleus-mcp", "NUCLEUS_MCP_PATH", "../mcp", &mcp);
        if (r < 0) {
                log_error_errno(r, "nucleus-mcp not found (set NUCLEUS_MCP_PATH)");
                goto out;
        }
        r = mint_pod_credential(s, credtmp, &cred);
        if (r < 0)
                goto out;
        if (!socat_safe(tmp) || !socat_safe(mcp) || !socat_safe(s->pod) || !socat_safe(cred)) {
                r = log_error_errno(
                        -EINVAL, "the paths of the agent's bridges hold characters socat cannot take");
                goto out;
        }
        r = build_command(s, cfgpath, &inner, &envp);
        if (r < 0)
                goto out;

        /* Outside the sandbox: the pod's MCP server (with the pod's credential, not the node
         * key) behind a unix socket, one nucleus-mcp per connection; the gateway behind
         * another. */
        {
                _cleanup_free_ char *listen = xasprintf(
                                            "UNIX-LISTEN:%s/mcp.sock,fork,mode=0600%s", sockets, owner),
                                    *exec = xasprintf("EXEC:%s --pod %s --credential %s", mcp, s->pod, cred),
                                    *tools = mcp_env_tools(s->ops), *sock = xasprintf("%s/mcp.sock", sockets);
                _cleanup_strv_free_ char **benv = NULL;
                char *bargv[] = { (char *) "/usr/bin/socat", listen, exec, NULL };
                env_add(&benv, "PATH", "/usr/local/bin:/usr/bin:/bin");
                env_add(&benv, "NUCLEUS_NODE_URL", s->node->url);
                env_add(&benv, "NUCLEUS_MCP_TOOLS", tools);
                /* nucleus-mcp reads the same config dir as this run (an ordinary user's is under
                 * a HOME that this environment, built from nothing, does not carry). */
                _cleanup_free_ char *cfgdir = NULL;
                if (client_config_dir(&cfgdir) >= 0)
                        env_add(&benv, "NUCLEUS_CONFIG_DIR", cfgdir);
                r = spawn_bridge(bargv, benv, &mcp_bridge);
                if (r >= 0)
                        r = wait_for_socket(sock);
                if (r < 0) {
                        log_error_errno(r, "cannot start the MCP bridge (socat): %m");
                        goto out;
                }
        }
        if (s->gateway_url) {
                const char *port = strrchr(s->gateway_url, ':');
                _cleanup_free_ char *listen = xasprintf(
                                            "UNIX-LISTEN:%s/gateway.sock,fork,mode=0600%s", sockets, owner),
                                    *connect = xasprintf("TCP:127.0.0.1:%s", port ? port + 1 : "0"),
                                    *sock = xasprintf("%s/gateway.sock", sockets);
                char *bargv[] = { (char *) "/usr/bin/socat", listen, connect, NULL };
                char *benv[] = { (char *) "PATH=/usr/bin:/bin", NULL };
                r = spawn_bridge(bargv, benv, &gw_bridge);
                if (r >= 0)
                        r = wait_for_socket(sock);
                if (r < 0) {
                        log_error_errno(r, "cannot start the gateway bridge (socat): %m");
                        goto out;
                }
        }
        seccomp_fd = seccomp_program_fd();
        if (seccomp_fd < 0) {
                r = log_error_errno(seccomp_fd, "cannot build the agent's seccomp filter: %m");
                goto out;
        }
        if (inner[0][0] == '/' && !startswith(inner[0], "/usr/")) {
                _cleanup_free_ char *root = program_root(inner[0]);
                struct stat st;
                if (root && stat(root, &st) == 0 && S_ISREG(st.st_mode)) {
                        program_fd = open(root, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                        if (program_fd < 0) {
                                r = log_error_errno(-errno, "cannot open the agent program %s: %m", root);
                                goto out;
                        }
                }
        }
        r = confine(s, tmp, cfgpath, inner, seccomp_fd, program_fd, &argv);
        if (r < 0)
                goto out;
        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                r = log_error_errno(-errno, "pipe: %m");
                goto out;
        }
        {
                _cleanup_free_ char *shown = words_join(inner);
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
                int keep[2] = { seccomp_fd, program_fd };
                if (nullfd < 0 || dup2(nullfd, STDIN_FILENO) < 0 || dup2(pipefd[1], STDOUT_FILENO) < 0 ||
                    fcntl(seccomp_fd, F_SETFD, 0) < 0 ||
                    (program_fd >= 0 && fcntl(program_fd, F_SETFD, 0) < 0))
                        _exit(127);
                (void) fd_close_all_from(3, keep, program_fd >= 0 ? 2 : 1);
                if (drop &&
                    (setgroups(0, NULL) < 0 || setresgid(agent_gid, agent_gid, agent_gid) < 0 ||
                     setresuid(agent_uid, agent_uid, agent_uid) < 0))
                        _exit(127);
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
        char carry[8192 + 4];
        size_t n_carry = 0;
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
                        /* The agent's output carries model and pod text: escaped (escape.h),
                         * a UTF-8 sequence cut by the read kept for the next one. */
                        memcpy(carry + n_carry, buf, (size_t) k);
                        size_t have = n_carry + (size_t) k, whole = utf8_whole_prefix(carry, have);
                        _cleanup_free_ char *vis = escape_text(
                                carry, whole, ESCAPE_KEEP_NEWLINE | ESCAPE_KEEP_BACKSLASH);
                        (void) fputs(vis, pass);
                        (void) fflush(pass);
                        n_carry = have - whole;
                        memmove(carry, carry + whole, n_carry);
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
        if (n_carry > 0) { /* a cut sequence at the very end: its bytes, escaped */
                _cleanup_free_ char *vis = escape_text(
                        carry, n_carry, ESCAPE_KEEP_NEWLINE | ESCAPE_KEEP_BACKSLASH);
                (void) fputs(vis, pass);
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
        pidref_kill_and_wait(&mcp_bridge);
        pidref_kill_and_wait(&gw_bridge);
        remove_tree(tmp);
        if (credtmp)
                remove_tree(credtmp);
        return r;
}
