/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the OCI image archive descriptions (docker save manifest.json + config, OCI layout
 * index.json + manifests + configs). The input is split at NUL bytes: the first part is
 * manifest.json when it starts with '[', else index.json (with a valid oci-layout); every
 * further part is a blob stored under its own digest, as blobs/sha256/<hex> and <hex>.json, so
 * the parsers can follow digests into them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "hash-util.h"
#include "image-internal.h"
#include "string-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ImageOciFile files[16];
        size_t n = 0;
        if (size > 256 * 1024)
                return 0;
        const char *p = (const char *) data, *end = p + size;
        static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
        files[n++] = (ImageOciFile){ xstrdup("oci-layout"), xstrdup(layout), strlen(layout) };
        for (int part = 0; p <= end && n + 2 <= ELEMENTSOF(files); part++) {
                const char *z = memchr(p, 0, (size_t) (end - p));
                size_t len = z ? (size_t) (z - p) : (size_t) (end - p);
                char *d = xmalloc(len + 1);
                memcpy(d, p, len);
                d[len] = 0;
                if (part == 0)
                        files[n++] = (ImageOciFile){
                                xstrdup(len > 0 && d[0] == '[' ? "manifest.json" : "index.json"), d, len
                        };
                else {
                        char hex[SHA256_HEX_SIZE];
                        sha256_hex(d, len, hex);
                        files[n++] = (ImageOciFile){ xasprintf("blobs/sha256/%s", hex), d, len };
                        char *copy = xmalloc(len + 1);
                        memcpy(copy, d, len + 1);
                        files[n++] = (ImageOciFile){ xasprintf("%s.json", hex), copy, len };
                }
                if (!z)
                        break;
                p = z + 1;
        }
        ImageOciPlan plan = {};
        char *err = NULL;
        int r = image_oci_plan(files, n, &plan, &err);
        if (r == 0) {
                if (err || !plan.format || strv_length(plan.layers) != strv_length(plan.digests))
                        abort();
                STRV_FOREACH(dg, plan.digests)
                        if (strlen(*dg) != 64)
                                abort();
                image_oci_plan_done(&plan);
        } else if (!err)
                abort();
        free(err);
        for (size_t i = 0; i < n; i++) {
                free(files[i].name);
                free(files[i].data);
        }
        return 0;
}
