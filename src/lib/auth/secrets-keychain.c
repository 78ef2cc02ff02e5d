/* SPDX-License-Identifier: Apache-2.0 */
/*
 * macOS Keychain backend for the secret store through /usr/bin/security. Compiled on Darwin
 * only and UNTESTED in CI (no macOS runner): keep it small. The secret never appears on a
 * command line: `security -i` reads its command (with the hex value) from a pipe.
 */
#ifdef __APPLE__
#        include <errno.h>
#        include <fcntl.h>
#        include <signal.h>
#        include <spawn.h>
#        include <stdio.h>
#        include <string.h>
#        include <sys/wait.h>
#        include <unistd.h>

#        include "alloc-util.h"
#        include "fd-util.h"
#        include "secrets.h"
#        include "string-util.h"

#        define KEYCHAIN_SERVICE "com.nucleus"

extern char **environ;

static int run_security(char *const argv[], const char *stdin_text, char **ret_stdout) {
        int in[2] = { -1, -1 }, out[2] = { -1, -1 }, r, status;
        pid_t pid;
        posix_spawn_file_actions_t fa;
        char *const envp[] = { "PATH=/usr/bin:/bin", NULL };

        /* macOS has no pipe2(): create, then mark close-on-exec at once. The process is
         * single-threaded here, so no exec can race between the two calls. */
        if (pipe(in) < 0 || pipe(out) < 0) /* cloexec-ok: pipe2 is absent on Darwin; FD_CLOEXEC set below */
                return -errno;
        for (size_t i = 0; i < 2; i++) {
                (void) fcntl(in[i], F_SETFD, FD_CLOEXEC);
                (void) fcntl(out[i], F_SETFD, FD_CLOEXEC);
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_addclose(&fa, in[1]);
        posix_spawn_file_actions_addclose(&fa, out[0]);
        r = posix_spawn(&pid, "/usr/bin/security", &fa, NULL, argv, envp);
        posix_spawn_file_actions_destroy(&fa);
        (void) close(in[0]);
        (void) close(out[1]);
        if (r != 0) {
                (void) close(in[1]);
                (void) close(out[0]);
                return -r;
        }
        if (stdin_text)
                (void) loop_write(in[1], stdin_text, strlen(stdin_text));
        (void) close(in[1]);
        _cleanup_free_ char *data = NULL;
        size_t n = 0;
        r = read_full_fd(out[0], SECRET_FILE_MAX, &data, &n);
        (void) close(out[0]);
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        if (r < 0)
                return r;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -ENOENT;
        if (ret_stdout)
                *ret_stdout = TAKE_PTR(data);
        return 0;
}

int secret_keychain_store(SecretKind k, const char *hex) {
        const char *acct = secret_kind_to_string(k);
        if (!acct || !hex || strpbrk(hex, " \"'\n\\"))
                return -EINVAL;
        char *const argv[] = { "security", "-i", NULL };
        /* -U updates in place: no delete-then-add window that could lose the secret. */
        _cleanup_erase_free_ char *cmd = xasprintf(
                "add-generic-password -U -a %s -s %s -w %s\n", acct, KEYCHAIN_SERVICE, hex);
        return run_security(argv, cmd, NULL);
}

int secret_keychain_load(SecretKind k, char **ret_hex) {
        const char *acct = secret_kind_to_string(k);
        if (!acct)
                return -EINVAL;
        char *const argv[] = { "security", "find-generic-password", "-a", (char *) acct,
                               "-s",       KEYCHAIN_SERVICE,        "-w", NULL };
        char *out = NULL;
        int r = run_security(argv, NULL, &out);
        if (r < 0)
                return r;
        size_t n = strlen(out);
        if (n > 0 && out[n - 1] == '\n')
                out[n - 1] = 0;
        *ret_hex = out;
        return 0;
}
#endif
