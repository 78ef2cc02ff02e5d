/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Core macros: cleanup attributes, ownership hand-over, attributes, string tables.
 * Pure preprocessor and inline helpers; trusts nothing, allocates nothing.
 */
#pragma once

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _noreturn_ __attribute__((noreturn))
#define _printf_(a, b) __attribute__((format(printf, (a), (b))))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _pure_ __attribute__((pure))
#define _const_ __attribute__((const))
#define _public_ __attribute__((visibility("default")))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))

#define NUCLEUS_ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define ELEMENTSOF(x) NUCLEUS_ELEMENTSOF(x)
#define NUCLEUS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define NUCLEUS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define NUCLEUS_STRLEN(s) (sizeof(s) - 1)

/* Take ownership of a pointer: returns it and sets the variable to NULL. */
#define TAKE_PTR(p)                          \
        ({                                   \
                __typeof__(p) *_pp_ = &(p);  \
                __typeof__(p) _ptr_ = *_pp_; \
                *_pp_ = NULL;                \
                _ptr_;                       \
        })

/* Take ownership of a generic value: returns it and resets it to its null value. */
#define TAKE_GENERIC(var, type, nullvalue)    \
        ({                                    \
                type *_pvar_ = &(var);        \
                type _var_ = *_pvar_;         \
                type _nullvalue_ = nullvalue; \
                *_pvar_ = _nullvalue_;        \
                _var_;                        \
        })

/* Define a cleanup helper freep-style for a destructor that accepts NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func) \
        static inline void func##p(type *p) {   \
                if (*p)                         \
                        *p = func(*p);          \
        }

/* Same, for destructors that return void. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(type, func) \
        static inline void func##p(type *p) {        \
                if (*p)                              \
                        func(*p);                    \
        }

/*
 * String tables: DEFINE_STRING_TABLE_LOOKUP(verdict, Verdict) expects a
 * `static const char *const verdict_table[_VERDICT_MAX]` and defines
 * verdict_to_string() (NULL when out of range) and verdict_from_string()
 * (-EINVAL when unknown).
 */
#define DEFINE_STRING_TABLE_LOOKUP(name, type)                                              \
        const char *name##_to_string(type i) {                                              \
                if ((int) i < 0 || (size_t) i >= ELEMENTSOF(name##_table))                  \
                        return NULL;                                                        \
                return name##_table[i];                                                     \
        }                                                                                   \
        type name##_from_string(const char *s) {                                            \
                if (!s)                                                                     \
                        return (type) -EINVAL;                                              \
                for (size_t _i = 0; _i < ELEMENTSOF(name##_table); _i++)                    \
                        if (name##_table[_i] && __builtin_strcmp(name##_table[_i], s) == 0) \
                                return (type) _i;                                           \
                return (type) -EINVAL;                                                      \
        }

/* Return -errno from a libc call returning <0 with errno set; else the value. */
#define RET_NERRNO(expr)                                  \
        ({                                                \
                __typeof__(expr) _r_ = (expr);            \
                _r_ < 0 ? (__typeof__(_r_)) -errno : _r_; \
        })

static inline int negative_errno(void) {
        /* errno as a negative value, never 0 even if libc forgot to set it. */
        return errno > 0 ? -errno : -EIO;
}

static inline void protect_errno_restore(int *saved) {
        errno = *saved;
}
#define PROTECT_ERRNO _cleanup_(protect_errno_restore) _unused_ int _saved_errno_ = errno

/* errno values meaning "the kernel or sandbox does not support this" (STYLE.md rule 49). */
#define IN_SET_ERRNO_UNSUPPORTED(e) ((e) == ENOSYS || (e) == EINVAL || (e) == EPERM || (e) == EOPNOTSUPP)
