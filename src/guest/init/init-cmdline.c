/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel command line parsing for the guest init (see init-cmdline.h). Input: /proc/cmdline,
 * set by the host; parsed strictly, nothing is trusted beyond the documented nucleus.* keys.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc-util.h"
#include "init-cmdline.h"
#include "parse-util.h"
#include "string-util.h"

void init_cmdline_done(InitCmdline *c) {
        if (!c)
                return;
        c->channel = mfree(c->channel);
}

static int parse_ipv4(const char *s, size_t n, struct in_addr *ret) {
        char buf[INET_ADDRSTRLEN];

        if (n == 0 || n >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = 0;
        if (inet_pton(AF_INET, buf, ret) != 1)
                return -EINVAL;
        return 0;
}

int init_net_parse(const char *value, InitNetConfig *ret) {
        InitNetConfig c = {};
        const char *slash, *comma1, *comma2;
        uint32_t prefix;
        char pbuf[4];

        if (!value)
                return -EINVAL;
        slash = strchr(value, '/');
        comma1 = strchr(value, ',');
        if (!slash || !comma1 || slash > comma1)
                return -EINVAL;
        comma2 = strchr(comma1 + 1, ',');
        if (!comma2 || strchr(comma2 + 1, ','))
                return -EINVAL;

        if (parse_ipv4(value, (size_t) (slash - value), &c.addr) < 0)
                return -EINVAL;
        size_t plen = (size_t) (comma1 - slash - 1);
        if (plen == 0 || plen >= sizeof(pbuf))
                return -EINVAL;
        memcpy(pbuf, slash + 1, plen);
        pbuf[plen] = 0;
        if (safe_atou32(pbuf, &prefix) < 0 || prefix < 1 || prefix > 32)
                return -EINVAL;
        c.prefix = prefix;
        if (parse_ipv4(comma1 + 1, (size_t) (comma2 - comma1 - 1), &c.gateway) < 0)
                return -EINVAL;
        if (parse_ipv4(comma2 + 1, strlen(comma2 + 1), &c.dns) < 0)
                return -EINVAL;

        char a[INET_ADDRSTRLEN];
        if (!inet_ntop(AF_INET, &c.addr, a, sizeof(a)))
                return -EINVAL;
        (void) snprintf(c.text, sizeof(c.text), "%s/%u", a, c.prefix);
        *ret = c;
        return 0;
}

/* Iterate whitespace-separated tokens: returns the next token start and its length. */
static const char *next_token(const char **p, size_t *ret_len) {
        const char *s = *p;
        while (*s == ' ' || *s == '\t' || *s == '\n')
                s++;
        if (!*s)
                return NULL;
        const char *e = s;
        while (*e && *e != ' ' && *e != '\t' && *e != '\n')
                e++;
        *ret_len = (size_t) (e - s);
        *p = e;
        return s;
}

int init_cmdline_parse(const char *cmdline, InitCmdline *ret, const char **reterr) {
        InitCmdline c = {};
        bool seen_channel = false, seen_net = false, seen_probe = false;
        const char *p = cmdline ? cmdline : "", *tok;
        size_t len;

        while ((tok = next_token(&p, &len))) {
                _cleanup_free_ char *t = xstrndup(tok, len);
                const char *v;

                if ((v = startswith(t, "nucleus.channel="))) {
                        if (seen_channel) {
                                *reterr = "nucleus.channel= given twice";
                                goto fail;
                        }
                        seen_channel = true;
                        if (isempty(v) || strlen(v) > 128 || string_has_cc(v, NULL) || strchr(v, '/')) {
                                *reterr = "nucleus.channel= is empty, too long or has bad characters";
                                goto fail;
                        }
                        c.channel = xstrdup(v);
                        const char *port = startswith(v, "vsock:");
                        if (port && (safe_atou32(port, &c.vsock_port) < 0 || c.vsock_port == 0)) {
                                *reterr = "nucleus.channel=vsock:<port> needs a port number 1..4294967295";
                                goto fail;
                        }
                } else if ((v = startswith(t, "nucleus.net="))) {
                        if (seen_net) {
                                *reterr = "nucleus.net= given twice";
                                goto fail;
                        }
                        seen_net = true;
                        if (streq(v, INIT_NET_PARKED)) {
                                c.net_parked = true;
                                continue;
                        }
                        if (init_net_parse(v, &c.net) < 0) {
                                *reterr = "nucleus.net= is not <ipv4>/<prefix>,<gateway>,<dns> or parked";
                                goto fail;
                        }
                        c.have_net = true;
                } else if ((v = startswith(t, "nucleus.probe="))) {
                        if (seen_probe) {
                                *reterr = "nucleus.probe= given twice";
                                goto fail;
                        }
                        seen_probe = true;
                        if (streq(v, "1"))
                                c.probe = true;
                        else if (!streq(v, "0")) {
                                *reterr = "nucleus.probe= must be 0 or 1";
                                goto fail;
                        }
                } else if (startswith(t, "nucleus.")) {
                        *reterr = "unknown nucleus.* parameter on the kernel command line";
                        goto fail;
                }
        }
        if (!c.channel)
                c.channel = xstrdup(INIT_DEFAULT_CHANNEL);
        *ret = c;
        return 0;
fail:
        init_cmdline_done(&c);
        return -EINVAL;
}

static bool module_name_eq(const char *a, size_t alen, const char *b) {
        size_t blen = strlen(b);
        if (alen != blen)
                return false;
        for (size_t i = 0; i < alen; i++) {
                char x = a[i] == '-' ? '_' : a[i], y = b[i] == '-' ? '_' : b[i];
                if (x != y)
                        return false;
        }
        return true;
}

char *init_cmdline_module_params(const char *cmdline, const char *module) {
        const char *p = cmdline ? cmdline : "", *tok;
        size_t len, used = 0;
        char *out = xstrdup("");

        while ((tok = next_token(&p, &len))) {
                const char *dot = memchr(tok, '.', len), *eq = memchr(tok, '=', len);
                if (!dot || (eq && eq < dot) || !module_name_eq(tok, (size_t) (dot - tok), module))
                        continue;
                size_t plen = len - (size_t) (dot - tok) - 1;
                if (plen == 0)
                        continue;
                out = xrealloc(out, used + plen + 2);
                if (used > 0)
                        out[used++] = ' ';
                memcpy(out + used, dot + 1, plen);
                used += plen;
                out[used] = 0;
        }
        return out;
}
