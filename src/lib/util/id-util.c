/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "id-util.h"

bool pod_id_is_uuid(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        }
        return true;
}

bool pod_id_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > POD_ID_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

bool operation_name_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return n >= 1 && n <= OPERATION_NAME_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz_") == n;
}
