/* SPDX-License-Identifier: Apache-2.0 */
/* The console's page, script and style sheet (src/cli/console/), compiled into the binary by
 * scripts/embed-assets so the console makes no request that leaves the machine. */
#pragma once

#include <stddef.h>

typedef struct ConsoleAsset {
        const char *path; /* URL path: "/", "/console.js", "/console.css" */
        const char *type; /* Content-Type */
        const unsigned char *data;
        size_t size;
} ConsoleAsset;

extern const ConsoleAsset console_assets[];
extern const size_t console_assets_count;
