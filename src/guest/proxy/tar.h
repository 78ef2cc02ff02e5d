/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A strict, incremental (push) reader for ustar/pax/GNU tar streams. The archive is untrusted:
 * header checksums are verified, numeric fields parsed strictly, extended headers (pax 'x',
 * GNU 'L'/'K') are size-capped, and entry names are handed out raw — the caller decides what
 * is safe to create (proxy-import.c). No allocation is sized by the archive beyond the caps.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TAR_BLOCK 512U
#define TAR_MAX_EXTENDED (64U * 1024U) /* pax / GNU long-name payload cap */
#define TAR_MAX_PATH 4096U

typedef enum TarEntryType {
        TAR_ENTRY_FILE,
        TAR_ENTRY_DIR,
        TAR_ENTRY_SYMLINK,
        TAR_ENTRY_HARDLINK,
        TAR_ENTRY_CHAR,
        TAR_ENTRY_BLOCK,
        TAR_ENTRY_FIFO,
        _TAR_ENTRY_TYPE_MAX,
        _TAR_ENTRY_TYPE_INVALID = -EINVAL,
} TarEntryType;

typedef struct TarEntry {
        TarEntryType type;
        const char *path; /* raw name as in the archive (NUL-free, <= TAR_MAX_PATH) */
        const char *link; /* symlink/hardlink target, else NULL */
        mode_t mode;      /* permission bits as stored (caller masks) */
        uint64_t size;    /* content bytes (files only) */
} TarEntry;

typedef struct TarCallbacks {
        int (*entry)(void *userdata, const TarEntry *e);        /* <0 aborts */
        int (*data)(void *userdata, const void *buf, size_t n); /* file content, in order */
        int (*entry_end)(void *userdata);                       /* after the last data */
} TarCallbacks;

typedef enum TarState {
        TAR_STATE_HEADER,
        TAR_STATE_DATA,     /* file content for the callbacks */
        TAR_STATE_EXTENDED, /* collecting a pax/GNU extended payload */
        TAR_STATE_SKIP,     /* content we ignore (global pax header) */
        TAR_STATE_PADDING,
        TAR_STATE_END, /* after the two zero blocks */
        TAR_STATE_FAILED,
} TarState;

typedef struct TarReader {
        TarState state;
        uint8_t block[TAR_BLOCK];
        size_t block_got;
        uint64_t left;    /* bytes left in the current data/extended/skip section */
        uint64_t padding; /* padding bytes left after it */
        unsigned zero_blocks;
        char ext_type; /* 'x', 'L' or 'K' while collecting */
        char *ext;     /* extended payload buffer */
        size_t ext_got;
        char *pax_path, *pax_link, *long_name, *long_link; /* pending overrides */
        bool pax_size_set;
        uint64_t pax_size;
        char *cur_path, *cur_link; /* current entry's strings (owned) */
        uint64_t n_entries;
        char error[256]; /* reason, when state == TAR_STATE_FAILED */
} TarReader;

void tar_reader_init(TarReader *t);
void tar_reader_done(TarReader *t);

/* Feed bytes. Returns 0, or <0 (-EBADMSG: malformed archive, t->error says where; or a
 * callback's error, passed through). After an error the reader stays failed. */
int tar_reader_feed(TarReader *t, const void *buf, size_t n, const TarCallbacks *cb, void *userdata);

/* At end of input: 0 if the archive ended cleanly (end-of-archive blocks, or exactly at an
 * entry boundary), -EBADMSG if it was truncated. */
int tar_reader_finish(TarReader *t);
