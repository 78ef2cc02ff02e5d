/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest init internals shared by its files: the fixed initramfs layout the image builder
 * (src/lib/image) produces, timeouts, and the small network helpers. Nothing here is used
 * outside the guest init.
 */
#pragma once

#include <dirent.h>
#include <net/if.h>
#include <stddef.h>

#include "init-cmdline.h"
#include "init-disk.h"
#include "time-util.h"

/* Initramfs layout (must match src/lib/image/image-initramfs.c). */
#define INIT_MODULE_DIR "/nucleus/modules"
#define INIT_MODULE_LIST "/nucleus/modules/load.list" /* one "<name>.ko" per line, load order */
/* The system disk's mount point in the new root and its layout (src/lib/image IMAGE_SYSTEM). */
#define INIT_NUCLEUS_DIR "/nucleus"
#define INIT_PROXY_PATH "/nucleus/bin/nucleus-tool-proxy"
#define INIT_FETCH_HELPER_PATH "/nucleus/bin/nucleus-web-fetch" /* optional, with its libraries: */
#define INIT_FETCH_LIBDIR "/nucleus/lib"
/* Mount point of the scratch disk's root-owned filesystem root; its "workspace" subdirectory is
 * bound at /workspace. Also the proxy's default --state-dir (src/guest/proxy/main.c), so the
 * baseline repository lives on the disk beside the workspace, where the agent cannot reach. */
#define INIT_SCRATCH_DIR "/run/nucleus"

/* Console markers (part of the host/guest contract). Disk serials and labels: init-disk.h. */
#define INIT_MARKER "nucleus-guest-init: started"
#define INIT_PROBE_MARKER "nucleus-guest-init: probe ok"

/* Bounded waits. TCG guests are slow, so these are generous but finite. */
#define INIT_DEVICE_TIMEOUT_USEC (15 * USEC_PER_SEC)
#define INIT_NIC_TIMEOUT_USEC (3 * USEC_PER_SEC)
#define INIT_PROXY_STOP_USEC (10 * USEC_PER_SEC) /* SIGTERM -> SIGKILL on shutdown */

#define IFNAMSIZ_INIT IFNAMSIZ

static inline void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}
