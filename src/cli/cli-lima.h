/* SPDX-License-Identifier: Apache-2.0 */
/*
 * macOS support: the node runs inside a Lima VM. Chip and OS detection, the Lima template,
 * and the limactl calls of setup/start/stop. Compiled everywhere; selected on Darwin, or on
 * Linux with NUCLEUS_TEST_PLATFORM=darwin-arm64|darwin-x86_64 (tests, with a stand-in
 * limactl on PATH and NUCLEUS_TEST_MAC_CHIP / NUCLEUS_TEST_MAC_VERSION).
 */
#pragma once

#include <stdbool.h>

#include "cli-setup.h"

typedef struct MacPlatform {
        bool apple_silicon;       /* else Intel */
        char *chip;               /* "Apple M3 Pro", "Intel(R) Core(TM) i7-..." */
        unsigned chip_generation; /* M<n>; 0 for Intel or unknown */
        unsigned os_major, os_minor;
        bool nested_virt; /* M3+ and macOS 15+ */
} MacPlatform;

void mac_platform_done(MacPlatform *p);

/* True when the Lima path applies (Darwin, or the test override). */
bool cli_platform_is_darwin(void);

/* Detect chip and OS version. Returns 0 or a negative errno (logged). */
int mac_platform_detect(MacPlatform *ret);

/* The Lima template (YAML) for this platform. Caller frees. */
char *lima_template(
        const MacPlatform *p, const char *artifacts_dir, unsigned cpus, unsigned memory_gib, unsigned disk_gib);

/* setup's macOS path. Returns 0 or a negative errno (steps recorded in ctx). */
int setup_darwin(SetupContext *ctx);

/* limactl helpers for start/stop. status: "Running", "Stopped", ... or NULL when absent. */
int lima_vm_status(const char *name, char **ret_status);
int lima_run(char *const argv[]);
