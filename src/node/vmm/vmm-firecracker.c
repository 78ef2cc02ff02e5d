/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Driver "firecracker": the same guest kernel (uncompressed vmlinux), initramfs and disks,
 * configured through Firecracker's API socket (libcurl with CURLOPT_UNIX_SOCKET_PATH, one
 * socket per pod: <pod>/vm/api.sock), the channel over vsock (host side: connect to the UDS
 * and do the "CONNECT <port>\n" / "OK <port>\n" handshake), the jailer when configured.
 * Written against Firecracker's documented API; it cannot run on the development machine
 * (no usable KVM), so only the request bodies and the handshake parser are tested.
 */
#include <curl/curl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc-util.h"
#include "fd-util.h"
#include "json-util.h"
#include "image.h"
#include "log.h"
#include "string-util.h"
#include "vmm-firecracker.h"
#include "vmm-internal.h"

static char *dump(json_t *j) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        if (!s)
                oom_abort();
        return s;
}

char *firecracker_body_boot_source(const char *kernel, const char *initrd, const char *boot_args) {
        json_t *j = json_pack("{s:s,s:s}", "kernel_image_path", kernel, "boot_args", boot_args);
        if (initrd)
                json_object_set_new(j, "initrd_path", json_string(initrd));
        return dump(j);
}

char *firecracker_body_drive(const char *drive_id, const char *path, bool is_root, bool read_only) {
        return dump(json_pack(
                "{s:s,s:s,s:b,s:b}",
                "drive_id",
                drive_id,
                "path_on_host",
                path,
                "is_root_device",
                is_root,
                "is_read_only",
                read_only));
}

char *firecracker_body_machine_config(unsigned vcpus, uint64_t mem_mib) {
        return dump(json_pack(
                "{s:I,s:I,s:b}", "vcpu_count", (json_int_t) vcpus, "mem_size_mib", (json_int_t) mem_mib, "smt", 0));
}

char *firecracker_body_vsock(uint32_t guest_cid, const char *uds_path) {
        return dump(json_pack("{s:I,s:s}", "guest_cid", (json_int_t) guest_cid, "uds_path", uds_path));
}

char *firecracker_body_network(const char *iface_id, const char *tap, const char *mac) {
        return dump(json_pack("{s:s,s:s,s:s}", "iface_id", iface_id, "host_dev_name", tap, "guest_mac", mac));
}

char *firecracker_body_action(const char *action_type) {
        return dump(json_pack("{s:s}", "action_type", action_type));
}

size_t firecracker_handshake_request(char buf[static 32], uint32_t port) {
        return (size_t) snprintf(buf, 32, "CONNECT %" PRIu32 "\n", port);
}

int firecracker_handshake_parse(const char *buf, size_t n, uint32_t *ret_port) {
        const char *nl = memchr(buf, '\n', n);
        uint64_t port = 0;
        size_t len;

        /* Validate the prefix as far as it has arrived, so garbage fails early. */
        for (size_t i = 0; i < NUCLEUS_MIN(n, (size_t) 3); i++)
                if (buf[i] != "OK "[i])
                        return -EPROTO;
        if (!nl)
                return n >= FIRECRACKER_HANDSHAKE_MAX ? -E2BIG : 0;
        len = (size_t) (nl - buf);
        if (len < 4 || len > 3 + 10)
                return -EPROTO;
        for (size_t i = 3; i < len; i++) {
                if (buf[i] < '0' || buf[i] > '9')
                        return -EPROTO;
                port = port * 10 + (uint64_t) (buf[i] - '0');
        }
        if (port > UINT32_MAX)
                return -EPROTO;
        if (nl + 1 != buf + n)
                return -EPROTO; /* the mux sends nothing after the line before we speak */
        *ret_port = (uint32_t) port;
        return 1;
}

typedef struct FcData {
        char *api_sock;
        char *vsock_uds;
} FcData;

static int fc_probe(const VmmLaunch *l, char **reterr) {
        _cleanup_close_ int kvm = -EBADF;

        if (!l->firecracker_path || access(l->firecracker_path, X_OK) < 0) {
                *reterr = xasprintf(
                        "driver firecracker: binary not found at '%s' (install Firecracker and set [node] "
                        "firecracker_path)",
                        l->firecracker_path ?: "(unset)");
                return -ENOENT;
        }
        if (l->jailer_path && access(l->jailer_path, X_OK) < 0) {
                *reterr = xasprintf(
                        "driver firecracker: jailer configured but not executable: %s", l->jailer_path);
                return -ENOENT;
        }
        kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0) {
                *reterr = xasprintf("driver firecracker needs a usable /dev/kvm: %s", strerror(errno));
                return -ENODEV;
        }
        /* KVM_GET_API_VERSION = _IO(0xAE, 0x00); 12 is the only stable version. */
        if (ioctl(kvm, _IO(0xAE, 0x00), 0) != 12) {
                *reterr = xstrdup("driver firecracker: /dev/kvm exists but KVM is not usable on this host");
                return -ENODEV;
        }
        static const char *const files[] = { IMAGE_VMLINUX, IMAGE_INITRAMFS, IMAGE_SYSTEM, IMAGE_ROOTFS };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *p = xasprintf("%s/%s", l->image_dir ?: "", files[i]);
                if (access(p, R_OK) < 0) {
                        *reterr = xasprintf("guest image incomplete: %s is missing", p);
                        return -ENOENT;
                }
        }
        _cleanup_free_ char *system = xasprintf("%s/" IMAGE_SYSTEM, l->image_dir ?: "");
        int r = image_system_check(system, reterr);
        if (r < 0)
                return r;
        return image_boot_files_check(l->image_dir ?: "", files, ELEMENTSOF(files), reterr);
}

static size_t fc_discard(void *p, size_t sz, size_t nm, void *ud) {
        (void) p;
        (void) ud;
        return sz * nm;
}

/* One API call: PUT http://localhost<path> over the per-pod unix socket. */
static int fc_put(const char *api_sock, const char *path, const char *body, char **reterr) {
        CURL *c = curl_easy_init();
        struct curl_slist *h = NULL;
        _cleanup_free_ char *url = xasprintf("http://localhost%s", path);
        long code = 0;
        CURLcode cr;

        if (!c)
                return -ENOMEM;
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Accept: application/json");
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, api_sock);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fc_discard);
        cr = curl_easy_perform(c);
        if (cr == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        if (cr != CURLE_OK) {
                *reterr = xasprintf("firecracker API PUT %s: %s", path, curl_easy_strerror(cr));
                return -EIO;
        }
        if (code < 200 || code > 299) {
                *reterr = xasprintf("firecracker API PUT %s: HTTP %ld", path, code);
                return -EIO;
        }
        return 0;
}

static int fc_start(const VmmLaunch *l, Vmm *vm, char **reterr) {
        FcData *d = xnew0(FcData, 1);
        _cleanup_free_ char *vmdir = xasprintf("%s/vm", l->pod_dir);
        _cleanup_free_ char *console = xasprintf("%s/console.log", l->pod_dir);
        _cleanup_free_ char *kernel = xasprintf("%s/vmlinux", l->image_dir);
        _cleanup_free_ char *initrd = xasprintf("%s/initramfs.cpio.gz", l->image_dir);
        _cleanup_free_ char *rootfs = xasprintf("%s/rootfs.ext4", l->image_dir);
        _cleanup_free_ char *system = xasprintf("%s/" IMAGE_SYSTEM, l->image_dir);
        _cleanup_free_ char *scratch = NULL, *args = NULL, *body = NULL, *id = NULL;
        _cleanup_close_ int logfd = -EBADF;
        char **argv = NULL;
        int r;

        vm->data = d;
        if (mkdir(vmdir, 0700) < 0 && errno != EEXIST)
                return -errno;
        d->api_sock = xasprintf("%s/api.sock", vmdir);
        d->vsock_uds = xasprintf("%s/vsock.sock", vmdir);
        scratch = xasprintf("%s/scratch.img", vmdir);
        (void) unlink(d->api_sock);
        (void) unlink(d->vsock_uds);

        /* The same disk as QEMU's (label, root-owned root): the guest finds it by its label. */
        r = image_scratch_create(scratch, (uint64_t) l->scratch_mib * 1024 * 1024);
        if (r < 0) {
                *reterr = xasprintf("cannot create scratch disk %s: %s", scratch, strerror(-r));
                return r;
        }
        logfd = open(console, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (logfd < 0)
                return -errno;

        id = xstrndup(l->pod_id, 8);
        if (l->jailer_path) {
                /* The jailer chroots under <vm>/jail, drops to run_uid and execs firecracker; paths
                 * given to the API are then relative to that chroot (hard links made below). */
                _cleanup_free_ char *u = xasprintf("%u", (unsigned) l->run_uid);
                _cleanup_free_ char *g = xasprintf("%u", (unsigned) l->run_gid);
                _cleanup_free_ char *base = xasprintf("%s/jail", vmdir);
                VMM_STRV_EXTEND(
                        &argv,
                        l->jailer_path,
                        "--id",
                        id,
                        "--exec-file",
                        l->firecracker_path,
                        "--uid",
                        u,
                        "--gid",
                        g,
                        "--chroot-base-dir",
                        base,
                        "--",
                        "--api-sock",
                        "/api.sock");
                free(d->api_sock);
                d->api_sock = xasprintf("%s/firecracker/%s/root/api.sock", base, id);
        } else
                VMM_STRV_EXTEND(&argv, l->firecracker_path, "--api-sock", d->api_sock, "--id", id);

        r = vmm_spawn(l, NULL, argv, logfd, -1, &vm->pid);
        strv_free(argv);
        if (r < 0) {
                *reterr = xasprintf("cannot start firecracker: %s", strerror(-r));
                return r;
        }
        /* Wait for the API socket. */
        for (int i = 0; i < 300 && access(d->api_sock, F_OK) < 0; i++)
                (void) usleep(10 * 1000);

        args = xasprintf(
                "console=ttyS0 quiet panic=-1 reboot=k pci=off nucleus.channel=vsock:%u%s%s",
                FIRECRACKER_CHANNEL_PORT,
                l->net_cmdline ? " " : "",
                l->net_cmdline ?: "");
        body = firecracker_body_boot_source(kernel, initrd, args);
        r = fc_put(d->api_sock, "/boot-source", body, reterr);
        if (r < 0)
                return r;
        free(body);
        /* Firecracker does not pass drive_id to the guest as the virtio-blk serial (its GET_ID
         * answer is built from the backing file's st_dev/st_rdev/st_ino), so the guest init
         * finds these disks by their ext4 labels (nucleus-root, nucleus-scratch, nucleus-system; see
         * src/guest/init/init-disk.h). The ids only name the drives in the API and logs. */
        body = firecracker_body_drive("nucleus-rootfs", rootfs, false, true);
        r = fc_put(d->api_sock, "/drives/nucleus-rootfs", body, reterr);
        if (r < 0)
                return r;
        free(body);
        body = firecracker_body_drive("nucleus-scratch", scratch, false, false);
        r = fc_put(d->api_sock, "/drives/nucleus-scratch", body, reterr);
        if (r < 0)
                return r;
        free(body);
        body = firecracker_body_drive("nucleus-system", system, false, true);
        r = fc_put(d->api_sock, "/drives/nucleus-system", body, reterr);
        if (r < 0)
                return r;
        free(body);
        body = firecracker_body_machine_config(l->vcpus, l->memory_mib);
        r = fc_put(d->api_sock, "/machine-config", body, reterr);
        if (r < 0)
                return r;
        free(body);
        body = firecracker_body_vsock(FIRECRACKER_GUEST_CID, d->vsock_uds);
        r = fc_put(d->api_sock, "/vsock", body, reterr);
        if (r < 0)
                return r;
        if (l->tap_name) {
                free(body);
                body = firecracker_body_network("eth0", l->tap_name, "06:00:00:00:00:02");
                r = fc_put(d->api_sock, "/network-interfaces/eth0", body, reterr);
                if (r < 0)
                        return r;
        }
        free(body);
        body = firecracker_body_action("InstanceStart");
        r = fc_put(d->api_sock, "/actions", body, reterr);
        if (r < 0)
                return r;
        vm->accel = xstrdup("kvm");
        return 0;
}

static int fc_connect(Vmm *vm, usec_t timeout, int *ret_fd, char **reterr) {
        FcData *d = vm->data;
        usec_t end = now_usec(CLOCK_MONOTONIC) + timeout;
        int r;

        for (;;) {
                _cleanup_close_ int fd = -EBADF;
                char req[32], buf[FIRECRACKER_HANDSHAKE_MAX];
                size_t n = 0;
                uint32_t port;

                r = vmm_connect_unix_retry(
                        vm, d->vsock_uds, end - NUCLEUS_MIN(end, now_usec(CLOCK_MONOTONIC)), &fd);
                if (r < 0) {
                        *reterr = xasprintf("cannot reach the vsock socket %s: %s", d->vsock_uds, strerror(-r));
                        return r;
                }
                size_t k = firecracker_handshake_request(req, FIRECRACKER_CHANNEL_PORT);
                r = loop_write(fd, req, k);
                /* Read byte by byte so no channel byte after the line is consumed. */
                while (r >= 0) {
                        ssize_t got = read(fd, buf + n, 1);
                        if (got <= 0) {
                                r = got == 0 ? -ECONNRESET : -errno;
                                break;
                        }
                        n++;
                        r = firecracker_handshake_parse(buf, n, &port);
                        if (r != 0)
                                break;
                }
                if (r == 1) {
                        *ret_fd = TAKE_FD(fd);
                        return 0;
                }
                /* The guest's listener may not be up yet: the mux closes the connection. */
                if (now_usec(CLOCK_MONOTONIC) >= end) {
                        *reterr = xasprintf(
                                "vsock handshake with guest port %u failed: %s",
                                FIRECRACKER_CHANNEL_PORT,
                                strerror(r < 0 ? -r : EPROTO));
                        return r < 0 ? r : -EPROTO;
                }
                (void) usleep(100 * 1000);
        }
}

static void fc_cleanup(Vmm *vm) {
        FcData *d = vm->data;
        _cleanup_free_ char *scratch = xasprintf("%s/vm/scratch.img", vm->pod_dir);
        _cleanup_free_ char *vmdir = xasprintf("%s/vm", vm->pod_dir);
        if (d) {
                (void) unlink(d->api_sock);
                (void) unlink(d->vsock_uds);
        }
        (void) unlink(scratch);
        (void) rmdir(vmdir);
}

static void fc_free_data(Vmm *vm) {
        FcData *d = vm->data;
        if (!d)
                return;
        free(d->api_sock);
        free(d->vsock_uds);
        free(d);
        vm->data = NULL;
}

const VmmOps vmm_firecracker_ops = {
        .name = "firecracker",
        .weak_isolation = false,
        .probe = fc_probe,
        .start = fc_start,
        .connect = fc_connect,
        .cleanup = fc_cleanup,
        .free_data = fc_free_data,
};
