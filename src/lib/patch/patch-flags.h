/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Flags of a patch: which of its changes a host would later run, load or obey (docs/policy.md
 * "Flagged paths"). One home for the catalogue (flagged-paths.txt, compiled in), the path
 * folding that makes case and Unicode variants match it, and the computation of flags from
 * the patch itself with git's own parser. Used by the CLI, the node and the tool proxy.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct PatchFlagRule {
        const char *glob;  /* lower-case ASCII; matched against a folded path at any depth */
        const char *group; /* ecosystem, the flag's reason ("gradle", "coding agents") */
        const char *why;   /* what on the host runs or obeys it */
} PatchFlagRule;

extern const PatchFlagRule patch_flag_rules[];
extern const size_t patch_flag_rules_n;

/* The path as a case-insensitive, normalizing host file system would see it: every
 * default-ignorable code point dropped (HFS+ ignores a subset of them, as git's is_hfs_dotgit
 * knows), NFKC case folding, each component cut at a ':' (NTFS streams) and stripped of
 * trailing dots and spaces (NTFS). Bytes that are not UTF-8 become U+FFFD. Caller frees. */
char *patch_path_fold(const char *path);

/* The first catalogue rule the path (folded) matches, itself or any suffix that starts at a
 * component boundary; NULL when none does. */
const PatchFlagRule *patch_flag_match(const char *path);

/* What a patch touches and which of it is flagged. */
typedef struct PatchSummary {
        char **paths;  /* every path the patch names (new and old names), sorted, unique */
        json_t *flags; /* array of {"path", "reason", "why"}; one per path and reason */
} PatchSummary;

void patch_summary_done(PatchSummary *s);

/* Parse a git patch with `git apply --numstat --summary -z` (run with an empty environment,
 * no configuration, outside any repository) plus its extended headers for modes, and flag:
 * catalogue paths (new and old names), symlinks (mode 120000 on either side), gitlinks,
 * executables (new mode with an exec bit, mode-only changes included), binary files, and
 * text files whose first line is a shebang. An empty patch has no flags. A patch git cannot
 * parse, or whose header disagrees with git's reading, fails with -EBADMSG and *reterr. */
int patch_flags_compute(const char *patch, size_t n, PatchSummary *ret, char **reterr);

/* The patch without its new binary files (blocks with "new file mode" and a binary body:
 * build artefacts nobody reviews). *ret is the kept text (caller frees), *ret_dropped the
 * names left out (strv, may be NULL). */
void patch_drop_new_binaries(const char *patch, size_t n, char **ret, size_t *ret_n, char ***ret_dropped);

/* What the extended header of one "diff --git" block says. */
typedef struct PatchFile {
        char *path;     /* git's name for it (filled from numstat by patch_flags_compute) */
        char *old_path; /* rename/copy source */
        unsigned old_mode, new_mode;
        bool created, deleted, binary, shebang;
} PatchFile;

/* One pass over untrusted patch text: a PatchFile per "diff --git" block (modes, rename and
 * copy sources, binary bodies, a "#!" first line). Never fails; caller frees. */
PatchFile *patch_headers_parse(const char *patch, size_t n, size_t *ret_n);
void patch_files_free(PatchFile *files, size_t n);

/* Add one flag (deduplicated). */
void patch_flags_add(json_t *flags, const char *path, const char *reason, const char *why);

/* The host side (only the CLI sees the host's tree). Every symlink already in the tree under
 * root (bounded walk that never follows links) whose target resolves inside the tree makes
 * each patched path at or below that target reachable under the link's name too; when that
 * name matches the catalogue the path is flagged "symlinked" (an unchanged ".idea -> cfg" plus
 * a patch to cfg/x is a change to .idea/x). A patched path that passes through a host symlink
 * is flagged as well. Portable (macOS): realpath and lstat, no openat2. Returns 0 or -errno. */
int patch_flags_host_aliases(const char *root, char *const *paths, json_t *flags);
