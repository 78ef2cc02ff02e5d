/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Standalone driver for fuzz targets: replays every file in the directories or files given
 * on the command line through LLVMFuzzerTestOneInput, so corpora and committed crash-*
 * inputs run as ordinary tests without libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc-util.h"
#include "fd-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (1024 * 1024)

static int replay_file(int dirfd, const char *name) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r = read_full_file_at(dirfd, name, FUZZ_MAX_INPUT, &data, &size);
        if (r < 0) {
                fprintf(stderr, "fuzz-main: %s: %s\n", name, strerror(-r));
                return r;
        }
        (void) LLVMFuzzerTestOneInput((const uint8_t *) data, size);
        return 0;
}

int main(int argc, char **argv) {
        unsigned n = 0;
        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        if (errno == ENOENT)
                                continue; /* no corpus yet: nothing to replay */
                        perror(argv[i]);
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (replay_file(AT_FDCWD, argv[i]) < 0)
                                return 1;
                        n++;
                        continue;
                }
                DIR *d = opendir(argv[i]);
                if (!d) {
                        perror(argv[i]);
                        return 1;
                }
                struct dirent *de;
                while ((de = readdir(d))) {
                        if (de->d_name[0] == '.')
                                continue;
                        if (replay_file(dirfd(d), de->d_name) < 0) {
                                closedir(d);
                                return 1;
                        }
                        n++;
                }
                closedir(d);
        }
        /* Always exercise the empty input too. */
        (void) LLVMFuzzerTestOneInput((const uint8_t *) "", 0);
        printf("replayed %u inputs\n", n);
        return 0;
}
