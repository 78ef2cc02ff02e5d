/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz the audit line parser and the whole-log verifier with arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "json-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t pk[32] = { 1 };
        if (size > 256 * 1024)
                return 0;
        AuditRecord r;
        char *err = NULL;
        if (audit_record_parse_line((const char *) data, size, &r, &err) == 0) {
                if (!r.json || !r.pod || !r.prev || !r.op || !r.sig)
                        abort();
                json_decref(r.json);
        } else if (!err)
                abort();
        free(err);
        AuditVerifyReport rep;
        if (audit_verify_buffer((const char *) data, size, pk, 0, &rep) == 0) {
                if (rep.valid && size > 0)
                        abort(); /* nothing can be validly signed by this key */
                audit_verify_report_done(&rep);
        }
        return 0;
}
