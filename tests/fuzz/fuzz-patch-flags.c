/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the patch readers that see untrusted patch text before git does: the header parser,
 * the new-binary splitter and the path folding/catalogue matcher. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "patch-flags.h"
#include "string-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *s = (const char *) data;
        size_t nf = 0;
        PatchFile *files = patch_headers_parse(s, size, &nf);
        patch_files_free(files, nf);

        char *kept = NULL;
        size_t kn = 0;
        char **dropped = NULL;
        patch_drop_new_binaries(s, size, &kept, &kn, &dropped);
        /* invariant: only whole blocks are dropped, so the kept text is never longer */
        if (kn > size || strlen(kept) > kn)
                abort();
        free(kept);
        strv_free(dropped);

        if (size <= 1024) { /* a path: PATH_MAX-sized paths cost the same per byte */
                char *path = xstrndup(s, size);
                char *f = patch_path_fold(path);
                (void) patch_flag_match(path);
                free(f);
                free(path);
        }
        return 0;
}
