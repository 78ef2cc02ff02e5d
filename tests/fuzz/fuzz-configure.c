/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the configure contract's parsers (src/lib/proto/configure.c): whatever configure or
 * reconfigure accepts must serialise and parse back to the same configuration (same policy
 * digest, same JSON); a reconfigure always carries a clock and a seed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc-util.h"
#include "configure.h"
#include "json-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(configure_freep) Configure *c = NULL, *d = NULL;
        _cleanup_free_ char *err = NULL, *err2 = NULL;
        _cleanup_json_ json_t *j = NULL;

        if (size > 64 * 1024)
                return 0;
        if (json_parse_strict((const char *) data, size, size, &j, &err) < 0)
                return 0;
        {
                _cleanup_(configure_freep) Configure *r = NULL, *r2 = NULL;
                _cleanup_free_ char *rerr = NULL, *rerr2 = NULL;
                if (reconfigure_from_json(j, &r, &rerr) >= 0) {
                        if (r->wall_clock == 0 || !r->have_seed)
                                abort();
                        _cleanup_json_ json_t *ro = reconfigure_to_json(r);
                        if (reconfigure_from_json(ro, &r2, &rerr2) < 0)
                                abort();
                        _cleanup_json_ json_t *ro2 = reconfigure_to_json(r2);
                        if (!json_equal(ro, ro2))
                                abort();
                } else if (!rerr)
                        abort();
        }
        if (configure_from_json(j, &c, &err) < 0) {
                if (!err)
                        abort(); /* every refusal names its reason */
                return 0;
        }
        _cleanup_json_ json_t *out = configure_to_json(c);
        if (configure_from_json(out, &d, &err2) < 0)
                abort();
        _cleanup_json_ json_t *out2 = configure_to_json(d);
        if (!json_equal(out, out2))
                abort();
        char h1[65], h2[65];
        if (policy_sha256(c->policy, h1) < 0 || policy_sha256(d->policy, h2) < 0 || strcmp(h1, h2) != 0)
                abort();
        return 0;
}
