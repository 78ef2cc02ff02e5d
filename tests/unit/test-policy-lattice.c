/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Randomized property tests of the policy lattice over generated policies: commutativity,
 * associativity, absorption, idempotence, leq agreeing with meet and join, and the
 * normalization nu (idempotent, only adds obligations, monotone in the senses that hold).
 * Seed: POLICY_TEST_SEED or a fixed default, printed so a failure reproduces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc-util.h"
#include "policy.h"
#include "string-util.h"

#define ROUNDS 400

static uint64_t rng_state;

static uint32_t rnd(void) {
        /* xorshift64*, deterministic for a given seed */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return (uint32_t) ((rng_state * 2685821657736338717ULL) >> 32);
}

static void random_subset(char ***set, const char *const *universe) {
        for (const char *const *u = universe; *u; u++)
                if (rnd() % 2) {
                        strv_extend(set, *u);
                        strv_sort_uniq(*set);
                }
}

static Policy *gen_policy(bool trifecta) {
        static const char *const globs[] = { "src/**", "src/*.rs", "**/*.md", "docs/**", NULL };
        static const char *const blocks[] = { "**/.env", "**/*.pem", "**/secrets/**", NULL };
        static const char *const cmds[] = { "cargo test", "git status", "ls", "make", NULL };
        static const char *const cblocks[] = { "sudo", "rm -rf", "mkfs", NULL };
        static const uint64_t usd[] = { 0, 500000, 2000000, 5000000 };
        static const usec_t dur[] = { 60 * USEC_PER_SEC, 3600 * USEC_PER_SEC, USEC_INFINITY };
        char json[] = "{}";
        (void) json;
        Policy *p = NULL;
        /* Start from a profile to get valid rule objects, then randomize every field. */
        assert_int_equal(policy_profile_new("database_client", &p), 0);
        free(p->name);
        p->name = NULL;
        for (size_t i = 0; i < _OPERATION_MAX; i++)
                p->capabilities.level[i] = (CapLevel) (rnd() % 3);
        p->obligations = (Obligations) (rnd() & OBLIGATIONS_ALL);
        p->paths.unrestricted = rnd() % 3 == 0;
        p->paths.allowed = strv_free(p->paths.allowed);
        p->paths.allowed = xnew0(char *, 1);
        if (!p->paths.unrestricted)
                random_subset(&p->paths.allowed, globs);
        p->paths.blocked = strv_free(p->paths.blocked);
        p->paths.blocked = xnew0(char *, 1);
        random_subset(&p->paths.blocked, blocks);

        /* commands: keep a random subset of database_client's allowed rules (psql, ...) and the
         * default blocked rules */
        CommandPolicy *c = &p->commands;
        c->unrestricted = rnd() % 3 == 0;
        c->allowed = strv_free(c->allowed);
        c->allowed = xnew0(char *, 1);
        if (!c->unrestricted)
                random_subset(&c->allowed, cmds);
        size_t k = 0;
        for (size_t i = 0; i < c->allowed_rules.n_rules; i++) {
                if (c->unrestricted || rnd() % 2) {
                        free(c->allowed_rules.rules[i].program);
                        for (size_t a = 0; a < c->allowed_rules.rules[i].n_args; a++)
                                free(c->allowed_rules.rules[i].args[a].exact);
                        free(c->allowed_rules.rules[i].args);
                } else
                        c->allowed_rules.rules[k++] = c->allowed_rules.rules[i];
        }
        c->allowed_rules.n_rules = k;
        k = 0;
        for (size_t i = 0; i < c->blocked_rules.n_rules; i++) {
                if (rnd() % 2) {
                        free(c->blocked_rules.rules[i].program);
                        for (size_t a = 0; a < c->blocked_rules.rules[i].n_args; a++)
                                free(c->blocked_rules.rules[i].args[a].exact);
                        free(c->blocked_rules.rules[i].args);
                } else
                        c->blocked_rules.rules[k++] = c->blocked_rules.rules[i];
        }
        c->blocked_rules.n_rules = k;
        c->blocked = strv_free(c->blocked);
        c->blocked = xnew0(char *, 1);
        random_subset(&c->blocked, cblocks);

        p->max_usd_micros = usd[rnd() % ELEMENTSOF(usd)];
        p->max_input_tokens = rnd() % 4 * 1000;
        p->max_output_tokens = rnd() % 4 * 100;
        p->max_duration_usec = dur[rnd() % ELEMENTSOF(dur)];
        p->trifecta = trifecta;
        return p;
}

static void seed_from_env(void) {
        const char *s = getenv("POLICY_TEST_SEED");
        uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed2026ULL;
        if (seed == 0)
                seed = 1;
        rng_state = seed;
        print_message(
                "# property seed: %#llx (set POLICY_TEST_SEED to reproduce)\n", (unsigned long long) seed);
}

#define CHECK(cond, what)                                                                                   \
        do {                                                                                                \
                if (!(cond)) {                                                                              \
                        _cleanup_free_ char *ja = policy_canonical_json(a), *jb = policy_canonical_json(b); \
                        fail_msg("round %d: %s\n a=%s\n b=%s", round, what, ja, jb);                        \
                }                                                                                           \
        } while (0)

/* Lattice laws for the plain product lattice (trifecta off, so nu is the identity). */
static void test_lattice_laws(void **state) {
        seed_from_env();
        for (int round = 0; round < ROUNDS; round++) {
                _cleanup_(policy_freep) Policy *a = gen_policy(false), *b = gen_policy(false),
                                               *c = gen_policy(false);
                _cleanup_(policy_freep) Policy *ab = policy_meet(a, b), *ba = policy_meet(b, a);
                _cleanup_(policy_freep) Policy *jab = policy_join(a, b), *jba = policy_join(b, a);
                CHECK(policy_equal(ab, ba), "meet commutative");
                CHECK(policy_equal(jab, jba), "join commutative");

                _cleanup_(policy_freep) Policy *ab_c = policy_meet(ab, c), *bc = policy_meet(b, c);
                _cleanup_(policy_freep) Policy *a_bc = policy_meet(a, bc);
                CHECK(policy_equal(ab_c, a_bc), "meet associative");
                _cleanup_(policy_freep) Policy *jab_c = policy_join(jab, c), *jbc = policy_join(b, c);
                _cleanup_(policy_freep) Policy *ja_bc = policy_join(a, jbc);
                CHECK(policy_equal(jab_c, ja_bc), "join associative");

                _cleanup_(policy_freep) Policy *aa = policy_meet(a, a), *jaa = policy_join(a, a);
                CHECK(policy_equal(aa, a), "meet idempotent");
                CHECK(policy_equal(jaa, a), "join idempotent");

                _cleanup_(policy_freep) Policy *abs1 = policy_meet(a, jab), *abs2 = policy_join(a, ab);
                CHECK(policy_equal(abs1, a), "absorption a ∧ (a ∨ b) = a");
                CHECK(policy_equal(abs2, a), "absorption a ∨ (a ∧ b) = a");

                bool leq = policy_leq(a, b);
                CHECK(leq == policy_equal(ab, a), "leq(a,b) <=> a ∧ b = a");
                CHECK(leq == policy_equal(jab, b), "leq(a,b) <=> a ∨ b = b");
                CHECK(policy_leq(ab, a) && policy_leq(ab, b), "meet is a lower bound");
                CHECK(policy_leq(a, jab) && policy_leq(b, jab), "join is an upper bound");
                CHECK(policy_leq(a, a), "leq reflexive");
                if (policy_leq(a, b) && policy_leq(b, a))
                        CHECK(policy_equal(a, b), "leq antisymmetric");
                if (policy_leq(a, b) && policy_leq(b, c))
                        CHECK(policy_leq(a, c), "leq transitive");
        }
}

static void test_normalize(void **state) {
        seed_from_env();
        for (int round = 0; round < ROUNDS; round++) {
                _cleanup_(policy_freep) Policy *a = gen_policy(true), *b = gen_policy(true);
                _cleanup_(policy_freep) Policy *na = policy_copy(a);
                policy_normalize(na);
                /* only adds obligations, never touches anything else */
                CHECK((na->obligations & a->obligations) == a->obligations, "nu only adds obligations");
                Policy tmp = *na;
                tmp.obligations = a->obligations;
                CHECK(policy_equal(&tmp, a), "nu changes nothing but obligations");
                CHECK(policy_leq(na, a), "nu is deflationary");
                _cleanup_(policy_freep) Policy *nna = policy_copy(na);
                policy_normalize(nna);
                CHECK(policy_equal(nna, na), "nu idempotent");

                /* monotone: for the same capabilities, a <= b implies nu(a) <= nu(b) */
                _cleanup_(policy_freep) Policy *m = policy_meet(a, b);
                m->capabilities = a->capabilities;
                m->trifecta = true;
                if (policy_leq(m, a)) {
                        _cleanup_(policy_freep) Policy *nm = policy_copy(m);
                        policy_normalize(nm);
                        CHECK(policy_leq(nm, na), "nu monotone (same capabilities)");
                }
                /* the obligations nu adds are monotone in the capabilities */
                if (capabilities_leq(&a->capabilities, &b->capabilities)) {
                        Obligations fa = capabilities_trifecta_obligations(&a->capabilities);
                        Obligations fb = capabilities_trifecta_obligations(&b->capabilities);
                        CHECK((fa & fb) == fa, "trifecta obligations monotone in capabilities");
                }
                /* meet of normalized policies is normalized, and is the plain meet */
                _cleanup_(policy_freep) Policy *nb = policy_copy(b);
                policy_normalize(nb);
                _cleanup_(policy_freep) Policy *mn = policy_meet(na, nb);
                _cleanup_(policy_freep) Policy *mn2 = policy_copy(mn);
                policy_normalize(mn2);
                CHECK(policy_equal(mn, mn2), "meet result normalized");
                CHECK(mn->obligations == (na->obligations | nb->obligations),
                      "meet adds nothing to normalized");
                _cleanup_(policy_freep) Policy *jn = policy_join(na, nb);
                _cleanup_(policy_freep) Policy *jn2 = policy_copy(jn);
                policy_normalize(jn2);
                CHECK(policy_equal(jn, jn2), "join result normalized");
                /* the trifecta flag survives meet (adversarial test 2) */
                b->trifecta = false;
                _cleanup_(policy_freep) Policy *mt = policy_meet(a, b);
                CHECK(mt->trifecta, "meet enforces if either side does");
                CHECK((mt->obligations & capabilities_trifecta_obligations(&mt->capabilities)) ==
                              capabilities_trifecta_obligations(&mt->capabilities),
                      "meet result carries trifecta obligations");
        }
}

static void test_unrestricted_is_top(void **state) {
        /* The reference bugs of spec-permissions §5.6 / §6.8, fixed. */
        _cleanup_(policy_freep) Policy *a = NULL, *b = NULL;
        assert_int_equal(policy_profile_new("restrictive", &a), 0);
        assert_int_equal(policy_profile_new("restrictive", &b), 0);
        a->paths.unrestricted = b->paths.unrestricted = false;
        strv_extend(&a->paths.allowed, "src/**");
        strv_extend(&b->paths.allowed, "src/*.rs");
        _cleanup_(policy_freep) Policy *m = policy_meet(a, b);
        assert_false(m->paths.unrestricted); /* bug 1: disjoint meet was "allow everything" */
        assert_null(m->paths.allowed[0]);
        assert_false(policy_path_allowed(m, "src/main.rs"));

        b->paths.unrestricted = true;
        b->paths.allowed = strv_free(b->paths.allowed);
        b->paths.allowed = xnew0(char *, 1);
        _cleanup_(policy_freep) Policy *j = policy_join(a, b);
        assert_true(j->paths.unrestricted); /* bug 2: join with an open side was restricted */
        assert_true(policy_leq(a, b));
        assert_false(policy_leq(b, a)); /* bug 3: open compared as <= restricted */
}

/* A forked pod's handshake may keep or tighten its policy, never loosen it. */
static void test_narrows(void **state) {
        seed_from_env();
        for (int round = 0; round < ROUNDS; round++) {
                _cleanup_(policy_freep) Policy *a = gen_policy(rnd() % 2), *b = gen_policy(rnd() % 2);
                policy_normalize(a);
                policy_normalize(b);
                _cleanup_(policy_freep) Policy *ab = policy_meet(a, b), *jab = policy_join(a, b);
                CHECK(policy_narrows(a, a, NULL), "keeping the policy is allowed");
                CHECK(policy_narrows(a, ab, NULL), "a meet with anything only tightens");
                CHECK(policy_narrows(a, jab, NULL) == (policy_leq(jab, a) && (jab->trifecta || !a->trifecta)),
                      "a join narrows only when it adds nothing");
                CHECK(policy_narrows(a, b, NULL) == (policy_leq(b, a) && (b->trifecta || !a->trifecta)),
                      "narrows is leq plus the trifecta flag");
        }

        _cleanup_(policy_freep) Policy *cur = NULL;
        assert_int_equal(policy_profile_new("fix-issue", &cur), 0);
        const char *why = NULL;

        /* Each dimension made looser on its own is refused, with the reason named. */
        _cleanup_(policy_freep) Policy *more_money = policy_copy(cur);
        more_money->max_usd_micros = cur->max_usd_micros + 1;
        assert_false(policy_narrows(cur, more_money, &why));
        assert_non_null(strstr(why, "budget"));
        _cleanup_(policy_freep) Policy *more_tokens = policy_copy(cur);
        more_tokens->max_output_tokens = cur->max_output_tokens + 1;
        assert_false(policy_narrows(cur, more_tokens, &why));
        _cleanup_(policy_freep) Policy *longer = policy_copy(cur);
        longer->max_duration_usec = cur->max_duration_usec == USEC_INFINITY ? USEC_INFINITY
                                                                            : cur->max_duration_usec + 1;
        if (cur->max_duration_usec != USEC_INFINITY) {
                assert_false(policy_narrows(cur, longer, &why));
                assert_non_null(strstr(why, "time window"));
        }
        _cleanup_(policy_freep) Policy *no_trifecta = policy_copy(cur);
        no_trifecta->trifecta = !cur->trifecta;
        if (cur->trifecta) {
                assert_false(policy_narrows(cur, no_trifecta, &why));
                assert_non_null(strstr(why, "trifecta"));
        }
        _cleanup_(policy_freep) Policy *more_cap = policy_copy(cur);
        bool raised = false;
        for (size_t i = 0; i < _OPERATION_MAX && !raised; i++)
                if (more_cap->capabilities.level[i] != CAP_ALWAYS) {
                        more_cap->capabilities.level[i] = CAP_ALWAYS;
                        raised = true;
                }
        assert_true(raised);
        assert_false(policy_narrows(cur, more_cap, &why));
        assert_non_null(strstr(why, "capability"));
        _cleanup_(policy_freep) Policy *fewer_blocks = policy_copy(cur);
        assert_non_null(fewer_blocks->paths.blocked);
        assert_non_null(fewer_blocks->paths.blocked[0]);
        fewer_blocks->paths.blocked = strv_free(fewer_blocks->paths.blocked);
        fewer_blocks->paths.blocked = xnew0(char *, 1);
        policy_compile(fewer_blocks);
        assert_false(policy_narrows(cur, fewer_blocks, &why));
        _cleanup_(policy_freep) Policy *open_paths = policy_copy(cur);
        if (!cur->paths.unrestricted) {
                open_paths->paths.unrestricted = true;
                policy_compile(open_paths);
                assert_false(policy_narrows(cur, open_paths, &why));
        }

        /* Tighter in each dimension is accepted. */
        _cleanup_(policy_freep) Policy *less = policy_copy(cur);
        less->max_usd_micros = cur->max_usd_micros / 3;
        less->max_input_tokens = cur->max_input_tokens / 3;
        less->max_output_tokens = cur->max_output_tokens / 3;
        for (size_t i = 0; i < _OPERATION_MAX; i++)
                if (less->capabilities.level[i] == CAP_ALWAYS)
                        less->capabilities.level[i] = CAP_LOW_RISK;
        policy_normalize(less);
        assert_true(policy_narrows(cur, less, &why));
        assert_null(why);
        assert_false(policy_narrows(less, cur, NULL));
        assert_false(policy_narrows(NULL, cur, &why));
}

static void test_json_roundtrip(void **state) {
        seed_from_env();
        for (int round = 0; round < ROUNDS / 4; round++) {
                _cleanup_(policy_freep) Policy *a = gen_policy(true), *b = NULL;
                policy_normalize(a);
                _cleanup_free_ char *text = policy_canonical_json(a), *err = NULL;
                assert_int_equal(policy_from_json_text(text, strlen(text), &b, &err), 0);
                CHECK(policy_equal(a, b), "json round trip");
                _cleanup_free_ char *text2 = policy_canonical_json(b);
                assert_string_equal(text, text2);
                char h1[65], h2[65];
                assert_int_equal(policy_sha256(a, h1), 0);
                assert_int_equal(policy_sha256(b, h2), 0);
                assert_string_equal(h1, h2);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lattice_laws),        cmocka_unit_test(test_normalize),
                cmocka_unit_test(test_unrestricted_is_top), cmocka_unit_test(test_narrows),
                cmocka_unit_test(test_json_roundtrip),
        };
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
