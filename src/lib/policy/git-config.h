/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The git configuration allow list (issue 13 class 2, issue 14 item 2): the ONE place that says
 * which git configuration keys an agent may set and which a repository's config may hold.
 * Everything else is refused, because git has many keys that run programs (core.fsmonitor,
 * filter.<x>.clean, alias.*, imap.tunnel, guitool.<x>.cmd, ...) and new ones appear with new
 * releases; a deny list always lags. Used by the command analysis (git config, git -c,
 * --config-env, clone -c), by the tool proxy before every git exec (the config files of every
 * repository in the workspace), and by the upload sanitizing of `.git`.
 * Input is untrusted (command words, file text); the parser is bounded and never allocates
 * more than the text's size.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum GitConfigScope {
        GIT_CONFIG_SCOPE_SET,  /* what an agent may set (git config, git -c, clone -c) */
        GIT_CONFIG_SCOPE_FILE, /* what a repository config may hold: the above plus what git
                                * itself writes (init, clone, remote, branch --track) */
        _GIT_CONFIG_SCOPE_MAX,
} GitConfigScope;

#define GIT_CONFIG_TEXT_MAX (1024U * 1024U) /* bigger config files are refused */

/* key: "section.name" or "section.subsection.name" (section and name case-insensitive, the
 * subsection as written). False for a malformed key. */
bool git_config_key_allowed(const char *key, GitConfigScope scope);

/* One entry of a config file: key normalized (section and name lower-case), value NULL for a
 * bare boolean key; line is 1-based. Return < 0 to stop. */
typedef int (*GitConfigEntryFn)(const char *key, const char *value, unsigned line, void *userdata);

/* Parse config text with git's syntax: sections, "[section \"subsection\"]" and the old
 * "[section.subsection]", a key on the header's line, comments, quoting and escapes, backslash
 * line continuation, a UTF-8 BOM. Returns 0, the callback's negative value, -EINVAL for text git
 * would refuse (with *reterr "line N: ..."), -E2BIG over GIT_CONFIG_TEXT_MAX. */
int git_config_parse(const char *text, size_t n, GitConfigEntryFn fn, void *userdata, char **reterr);

/* Check a repository config file's text: 0 when every key is allowed (FILE scope); -EPERM with
 * *reterr naming the first key outside the allow list and its line; -EINVAL/-E2BIG as above,
 * also with *reterr. include.path and includeIf.*.path are outside the list (no includes). */
int git_config_check_text(const char *text, size_t n, char **reterr);

/* Judge the words of a `git config ...` command, args[0] = "config" (git 2.39 options and the
 * 2.46 subcommands list/get/set/unset/rename-section/remove-section/edit). Reading any key is
 * fine; setting, adding, replacing or unsetting needs a key the agent may set; --file/-f,
 * --blob, --edit/-e/edit, section renames and removals, --global/--system and unknown options
 * are refused. Returns 0, or -EPERM with a malloc'd reason in *ret_reason. */
int git_config_check_command(char *const *args, char **ret_reason);

/* "key=value" or "key" of `git -c` / `clone -c`, and "key=ENVVAR" of --config-env: true if the
 * key may be set. */
bool git_config_assignment_allowed(const char *kv);
