/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Capability levels (never < low_risk < always) over the eleven capabilities, the Operation
 * enum (same names, same order), and obligations as an 11-bit set of operations.
 * Pure values; string lookups reject anything not spelled exactly (snake_case).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum CapLevel {
        CAP_NEVER,
        CAP_LOW_RISK,
        CAP_ALWAYS,
        _CAP_LEVEL_MAX,
        _CAP_LEVEL_INVALID = -EINVAL,
} CapLevel;

/* Capabilities and operations share one enum: capability i gates operation i. The order is
 * the serialization order and bit i of an Obligations set. */
typedef enum Operation {
        OPERATION_READ_FILES,
        OPERATION_WRITE_FILES,
        OPERATION_EDIT_FILES,
        OPERATION_RUN_BASH,
        OPERATION_GLOB_SEARCH,
        OPERATION_GREP_SEARCH,
        OPERATION_WEB_SEARCH,
        OPERATION_WEB_FETCH,
        OPERATION_GIT_COMMIT,
        OPERATION_GIT_PUSH,
        OPERATION_CREATE_PR,
        _OPERATION_MAX,
        _OPERATION_INVALID = -EINVAL,
} Operation;

typedef struct Capabilities {
        CapLevel level[_OPERATION_MAX]; /* indexed by Operation */
} Capabilities;

/* Set of operations that need a human approval; bit i = Operation i. */
typedef uint16_t Obligations;
#define OBLIGATION(op) ((Obligations) (1U << (unsigned) (op)))
#define OBLIGATIONS_ALL ((Obligations) ((1U << _OPERATION_MAX) - 1U))

/* "never", "low_risk", "always"; NULL / -EINVAL when unknown. */
const char *cap_level_to_string(CapLevel l);
CapLevel cap_level_from_string(const char *s);
/* Debug spelling for messages: "Never", "LowRisk", "Always". */
const char *cap_level_to_display(CapLevel l);

/* "read_files" ... "create_pr"; NULL / -EINVAL when unknown. */
const char *operation_to_string(Operation op);
Operation operation_from_string(const char *s);

/* Lattice operations, component-wise. */
Capabilities capabilities_meet(const Capabilities *a, const Capabilities *b);
Capabilities capabilities_join(const Capabilities *a, const Capabilities *b);
bool capabilities_leq(const Capabilities *a, const Capabilities *b);
bool capabilities_equal(const Capabilities *a, const Capabilities *b);

/* Build from an 11-character string over {N,L,A} in Operation order (e.g. "ALLNAALLLNL").
 * Returns -EINVAL on a bad string. Used by profiles and tests. */
int capabilities_from_letters(const char *letters, Capabilities *ret);

/* Trifecta (spec-permissions §3): complete iff read_files >= low_risk AND (web_fetch or
 * web_search >= low_risk) AND (git_push or create_pr or run_bash >= low_risk). */
bool capabilities_trifecta_complete(const Capabilities *c);
/* The obligations the trifecta rule adds: every exfiltration capability (git_push,
 * create_pr, run_bash) that is >= low_risk, when the trifecta is complete; else 0. */
Obligations capabilities_trifecta_obligations(const Capabilities *c);
