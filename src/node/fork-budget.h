/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The budget arithmetic of snapshot and fork (docs/snapshot.md "Budget"; pod-snapshot.c does the
 * work) and which snapshots a cap removes. No locks, no I/O: unit-tested
 * (tests/unit/test-node-fork-budget.c).
 *
 * A "holder" is whoever hands out budget to forks: a running parent (its proxy's meter) or,
 * after the parent ended, the escrow of its snapshots (what the parent left at its end). Both
 * split the same way: count + 1 equal shares, rounded down; each child gets one, the holder
 * keeps the rest. So children + holder never exceed what the holder had.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Amounts of one budget: micro-USD and model tokens. */
typedef struct ForkBudget {
        uint64_t usd_micros;
        uint64_t input_tokens;
        uint64_t output_tokens;
} ForkBudget;

/* What a pod can still hand out: the proxy's left_usd_micros less the model-call reservations
 * the node holds for it (a reservation counts as spent: its call may have been paid), and the
 * policy's token maxima less what was consumed. The proxy's figures are the guest's word, so
 * they are bounded by what the node knows: left never counts above the policy's
 * max_usd_micros less what the node itself charged this pod (given: settled model calls and
 * children's shares; NULL: nothing), and consumed tokens never below that either. A guest reporting an
 * untouched budget after every fork thus cannot mint more for its children than its policy
 * held. Never underflows (0 at worst). */
ForkBudget fork_budget_remainder(
        uint64_t left_usd_micros,
        uint64_t reserved_usd_micros,
        uint64_t max_usd_micros,
        const ForkBudget *given,
        uint64_t max_input_tokens,
        uint64_t used_input_tokens,
        uint64_t max_output_tokens,
        uint64_t used_output_tokens);

/* *to += add per amount, saturating at UINT64_MAX. */
void fork_budget_add(ForkBudget *to, const ForkBudget *add);

/* Split have among count children and the holder: *ret_share = have / (count + 1) per amount
 * (rounded down), *ret_keeps = have - count * share (at least one share). Returns 0, -EINVAL
 * when count is 0, -EDQUOT when the micro-USD share would be 0 (nothing to hand out); nothing
 * is written on failure. */
int fork_budget_split(const ForkBudget *have, unsigned count, ForkBudget *ret_share, ForkBudget *ret_keeps);

/* One snapshot as the cap sees it. */
typedef struct SnapshotCapEntry {
        uint64_t created_usec; /* CLOCK_REALTIME */
        uint64_t bytes;        /* state file and the scratch copy's allocated blocks */
        bool parent_ended;     /* the parent ended (or its record is gone) */
        bool pinned;           /* must stay: the snapshot just taken, or one a child restores from */
} SnapshotCapEntry;

/* Which snapshots to remove so that at most max_count (0: no limit) remain, holding at most
 * max_bytes (0: no limit): the oldest whose parent ended first, then the oldest of running
 * parents; pinned ones never. Sets remove[i] for each entry chosen (remove has n entries,
 * cleared first). Returns 0, or -ENOSPC when the caps cannot be met without a pinned one (what
 * could be chosen is still marked). */
int snapshot_cap_choose(const SnapshotCapEntry *e, size_t n, uint64_t max_count, uint64_t max_bytes, bool *remove);
