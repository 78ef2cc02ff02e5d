/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the guest init's kernel command line parsers (src/guest/init/init-cmdline.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "init-cmdline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > INIT_CMDLINE_MAX)
                return 0;
        char *s = xstrndup((const char *) data, size);
        InitCmdline c;
        const char *err = NULL;
        if (init_cmdline_parse(s, &c, &err) == 0) {
                if (!c.channel)
                        abort();
                init_cmdline_done(&c);
        } else if (!err)
                abort();
        free(init_cmdline_module_params(s, "virtio_mmio"));
        InitNetConfig n;
        (void) init_net_parse(s, &n);
        free(s);
        return 0;
}
