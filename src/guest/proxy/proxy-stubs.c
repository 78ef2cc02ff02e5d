/* SPDX-License-Identifier: Apache-2.0 */
/* temporary */
#include "proxy.h"
void op_web_fetch(Request *req) {
        request_fail(req, ERROR_KIND_UNSUPPORTED, "web_fetch: not available");
}
