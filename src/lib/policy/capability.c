/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Capability levels, operations and the trifecta rule (spec-permissions §1-§3). Pure values.
 */
#include "capability.h"
#include "macro.h"

static const char *const cap_level_table[_CAP_LEVEL_MAX] = {
        [CAP_NEVER] = "never",
        [CAP_LOW_RISK] = "low_risk",
        [CAP_ALWAYS] = "always",
};
DEFINE_STRING_TABLE_LOOKUP(cap_level, CapLevel);

static const char *const cap_level_display_table[_CAP_LEVEL_MAX] = {
        [CAP_NEVER] = "Never",
        [CAP_LOW_RISK] = "LowRisk",
        [CAP_ALWAYS] = "Always",
};

const char *cap_level_to_display(CapLevel l) {
        if ((int) l < 0 || l >= _CAP_LEVEL_MAX)
                return NULL;
        return cap_level_display_table[l];
}

static const char *const operation_table[_OPERATION_MAX] = {
        [OPERATION_READ_FILES] = "read_files",   [OPERATION_WRITE_FILES] = "write_files",
        [OPERATION_EDIT_FILES] = "edit_files",   [OPERATION_RUN_BASH] = "run_bash",
        [OPERATION_GLOB_SEARCH] = "glob_search", [OPERATION_GREP_SEARCH] = "grep_search",
        [OPERATION_WEB_SEARCH] = "web_search",   [OPERATION_WEB_FETCH] = "web_fetch",
        [OPERATION_GIT_COMMIT] = "git_commit",   [OPERATION_GIT_PUSH] = "git_push",
        [OPERATION_CREATE_PR] = "create_pr",
};
DEFINE_STRING_TABLE_LOOKUP(operation, Operation);

Capabilities capabilities_meet(const Capabilities *a, const Capabilities *b) {
        Capabilities r;
        for (size_t i = 0; i < _OPERATION_MAX; i++)
                r.level[i] = NUCLEUS_MIN(a->level[i], b->level[i]);
        return r;
}

Capabilities capabilities_join(const Capabilities *a, const Capabilities *b) {
        Capabilities r;
        for (size_t i = 0; i < _OPERATION_MAX; i++)
                r.level[i] = NUCLEUS_MAX(a->level[i], b->level[i]);
        return r;
}

bool capabilities_leq(const Capabilities *a, const Capabilities *b) {
        for (size_t i = 0; i < _OPERATION_MAX; i++)
                if (a->level[i] > b->level[i])
                        return false;
        return true;
}

bool capabilities_equal(const Capabilities *a, const Capabilities *b) {
        for (size_t i = 0; i < _OPERATION_MAX; i++)
                if (a->level[i] != b->level[i])
                        return false;
        return true;
}

int capabilities_from_letters(const char *letters, Capabilities *ret) {
        Capabilities c;
        if (!letters)
                return -EINVAL;
        for (size_t i = 0; i < _OPERATION_MAX; i++) {
                switch (letters[i]) {
                case 'N':
                        c.level[i] = CAP_NEVER;
                        break;
                case 'L':
                        c.level[i] = CAP_LOW_RISK;
                        break;
                case 'A':
                        c.level[i] = CAP_ALWAYS;
                        break;
                default:
                        return -EINVAL;
                }
        }
        if (letters[_OPERATION_MAX] != 0)
                return -EINVAL;
        *ret = c;
        return 0;
}

bool capabilities_trifecta_complete(const Capabilities *c) {
        bool private_data = c->level[OPERATION_READ_FILES] >= CAP_LOW_RISK;
        bool untrusted = c->level[OPERATION_WEB_FETCH] >= CAP_LOW_RISK ||
                c->level[OPERATION_WEB_SEARCH] >= CAP_LOW_RISK;
        bool exfil = c->level[OPERATION_GIT_PUSH] >= CAP_LOW_RISK ||
                c->level[OPERATION_CREATE_PR] >= CAP_LOW_RISK || c->level[OPERATION_RUN_BASH] >= CAP_LOW_RISK;
        return private_data && untrusted && exfil;
}

Obligations capabilities_trifecta_obligations(const Capabilities *c) {
        Obligations o = 0;
        if (!capabilities_trifecta_complete(c))
                return 0;
        if (c->level[OPERATION_GIT_PUSH] >= CAP_LOW_RISK)
                o |= OBLIGATION(OPERATION_GIT_PUSH);
        if (c->level[OPERATION_CREATE_PR] >= CAP_LOW_RISK)
                o |= OBLIGATION(OPERATION_CREATE_PR);
        if (c->level[OPERATION_RUN_BASH] >= CAP_LOW_RISK)
                o |= OBLIGATION(OPERATION_RUN_BASH);
        return o;
}
