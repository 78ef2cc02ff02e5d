/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fixed environment the tool proxy adds when it runs git. Git reads
 * configuration the agent may have planted (a gitdir file, a bare repository, nested
 * .git/config) and runs programs named there; command-line configuration (GIT_CONFIG_COUNT)
 * wins over every file, so these keys pin each program-running setting to a harmless value.
 * No input: a constant table.
 */
#include "policy.h"

/* Keep GIT_CONFIG_COUNT equal to the number of KEY_n/VALUE_n pairs (unit-tested). */
static const char *const git_hardening_env[] = {
        "GIT_CONFIG_NOSYSTEM=1",
        "GIT_CONFIG_SYSTEM=/dev/null",
        "GIT_CONFIG_GLOBAL=/dev/null",
        "GIT_TERMINAL_PROMPT=0",
        "GIT_PAGER=cat",
        "GIT_EDITOR=false",
        "GIT_ASKPASS=false",
        "GIT_PROTOCOL_FROM_USER=0",
        "GIT_CONFIG_COUNT=22",
        "GIT_CONFIG_KEY_0=core.fsmonitor",
        "GIT_CONFIG_VALUE_0=false",
        "GIT_CONFIG_KEY_1=core.hooksPath",
        "GIT_CONFIG_VALUE_1=/dev/null",
        "GIT_CONFIG_KEY_2=core.pager",
        "GIT_CONFIG_VALUE_2=cat",
        "GIT_CONFIG_KEY_3=core.editor",
        "GIT_CONFIG_VALUE_3=false",
        "GIT_CONFIG_KEY_4=sequence.editor",
        "GIT_CONFIG_VALUE_4=false",
        "GIT_CONFIG_KEY_5=core.sshCommand",
        "GIT_CONFIG_VALUE_5=false",
        "GIT_CONFIG_KEY_6=core.askPass",
        "GIT_CONFIG_VALUE_6=false",
        "GIT_CONFIG_KEY_7=core.gitProxy",
        "GIT_CONFIG_VALUE_7=false",
        "GIT_CONFIG_KEY_8=safe.bareRepository",
        "GIT_CONFIG_VALUE_8=explicit",
        "GIT_CONFIG_KEY_9=diff.external",
        "GIT_CONFIG_VALUE_9=",
        "GIT_CONFIG_KEY_10=credential.helper",
        "GIT_CONFIG_VALUE_10=",
        "GIT_CONFIG_KEY_11=uploadpack.packObjectsHook",
        "GIT_CONFIG_VALUE_11=",
        "GIT_CONFIG_KEY_12=protocol.allow",
        "GIT_CONFIG_VALUE_12=never",
        "GIT_CONFIG_KEY_13=protocol.ext.allow",
        "GIT_CONFIG_VALUE_13=never",
        "GIT_CONFIG_KEY_14=protocol.file.allow",
        "GIT_CONFIG_VALUE_14=always",
        "GIT_CONFIG_KEY_15=protocol.https.allow",
        "GIT_CONFIG_VALUE_15=always",
        "GIT_CONFIG_KEY_16=protocol.http.allow",
        "GIT_CONFIG_VALUE_16=always",
        "GIT_CONFIG_KEY_17=commit.gpgSign",
        "GIT_CONFIG_VALUE_17=false",
        "GIT_CONFIG_KEY_18=tag.gpgSign",
        "GIT_CONFIG_VALUE_18=false",
        "GIT_CONFIG_KEY_19=gpg.program",
        "GIT_CONFIG_VALUE_19=false",
        "GIT_CONFIG_KEY_20=core.attributesFile",
        "GIT_CONFIG_VALUE_20=/dev/null",
        "GIT_CONFIG_KEY_21=submodule.recurse",
        "GIT_CONFIG_VALUE_21=false",
        NULL,
};

const char *const *policy_git_hardening_env(void) {
        return git_hardening_env;
}
