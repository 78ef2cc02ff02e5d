# SPDX-License-Identifier: Apache-2.0
"""The test "internet" for network isolation tests, and a stand-in guest.

NetLab: a network namespace reached from the host through a veth, holding an HTTP server, a UDP
echo server and an authoritative DNS server (dnsmasq, queries logged) for a test zone, at
documentation addresses (198.51.100.0/24 for the link, 203.0.113.0/24 for services) chosen so
that nothing on this machine already uses them. Lab routes live in a routing table of their own,
selected only for packets from the pod pool (`ip rule from <pool>`), so the host's main table is
never touched and no real outside address is ever used.

Guest: a namespace whose veth is enslaved to a pod's bridge, configured like the guest kernel
would from nucleus.net=; it plays the microVM for library-level tests.

PodNet: drives the `net-test-helper` program (one pod network, commands on stdin).

Every name is unique per instance, so tests can run concurrently with other engineers' tests.
"""
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import textwrap
import time

PY = "/usr/bin/python3"


def sh(*argv, check=True, input=None, timeout=30):
    """Run argv (never a shell); return CompletedProcess with text output."""
    r = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def netns_exec(ns, *argv, **kw):
    return sh("ip", "netns", "exec", ns, *argv, **kw)


def host_ipv4_addrs():
    out = json.loads(sh("ip", "-j", "-4", "addr").stdout)
    return {a["local"] for i in out for a in i.get("addr_info", [])}


def host_routes():
    return json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all").stdout)


def netns_list():
    return [l.split()[0] for l in sh("ip", "netns", "list").stdout.splitlines() if l.strip()]


def link_exists(name):
    return os.path.exists(f"/sys/class/net/{name}")


# Code run inside namespaces (lab servers, guest probes). Kept as plain python3 snippets.
_SERVER = textwrap.dedent(
    r'''
    import socket, sys, threading, http.server, socketserver
    addrs = sys.argv[1].split(",")
    port = int(sys.argv[2])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("nucleus-lab %s\n" % self.server.server_address[0]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        def server_bind(self):
            # HTTPServer.server_bind asks getfqdn() for the name: a reverse lookup the lab
            # cannot answer, ~10 s per address before the server is up.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = self.server_address[:2]
    def udp(a):
        s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a, port))
        while True:
            d, peer = s.recvfrom(2048)
            s.sendto(b"echo:" + d, peer)
    for a in addrs:
        if ":" in a:
            class S6(S):
                address_family = socket.AF_INET6
            srv = S6((a, port), H)
        else:
            srv = S((a, port), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        threading.Thread(target=udp, args=(a,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    '''
)

# A static file server (GET of files under a directory) on one address and port.
_FILES = textwrap.dedent(
    r'''
    import functools, http.server, socketserver, sys
    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        def server_bind(self):
            socketserver.TCPServer.server_bind(self)  # no getfqdn() (see _SERVER)
            self.server_name, self.server_port = self.server_address[:2]
    class H(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass
    srv = S((sys.argv[1], int(sys.argv[2])), functools.partial(H, directory=sys.argv[3]))
    print("ready", flush=True)
    srv.serve_forever()
    '''
)

_PROBE = textwrap.dedent(
    r'''
    import json, socket, struct, sys, random
    op, args = sys.argv[1], json.loads(sys.argv[2])
    t = args.get("timeout", 1.5)
    def fam(a):
        return socket.AF_INET6 if ":" in a else socket.AF_INET
    res = {}
    try:
        if op == "tcp":
            s = socket.socket(fam(args["addr"]), socket.SOCK_STREAM)
            s.settimeout(t)
            s.connect((args["addr"], args["port"]))
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                c = s.recv(4096)
                if not c:
                    break
                data += c
            res = {"ok": True, "body": data.decode(errors="replace").split("\r\n\r\n", 1)[-1]}
        elif op == "udp":
            s = socket.socket(fam(args["addr"]), socket.SOCK_DGRAM)
            s.settimeout(t)
            s.sendto(b"ping", (args["addr"], args["port"]))
            d, _ = s.recvfrom(2048)
            res = {"ok": d == b"echo:ping"}
        elif op == "dns":
            tid = random.randrange(65536)
            q = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0)
            for label in args["name"].rstrip(".").split("."):
                q += bytes([len(label)]) + label.encode()
            q += b"\0" + struct.pack(">HH", args.get("qtype", 1), 1)
            if args.get("tcp"):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(t)
                s.connect((args["server"], 53))
                s.sendall(struct.pack(">H", len(q)) + q)
                data = b""
                while len(data) < 2 or len(data) < 2 + struct.unpack(">H", data[:2])[0]:
                    c = s.recv(4096)
                    if not c:
                        raise OSError("connection closed")
                    data += c
                data = data[2:]
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(t)
                s.sendto(q, (args["server"], 53))
                data, _ = s.recvfrom(4096)
            rcode = struct.unpack(">H", data[2:4])[0] & 0xF
            an = struct.unpack(">H", data[6:8])[0]
            off = 12
            while data[off] != 0:
                off += data[off] + 1
            off += 5
            addrs = []
            for _ in range(an):
                if data[off] & 0xC0 == 0xC0:
                    off += 2
                else:
                    while data[off] != 0:
                        off += data[off] + 1
                    off += 1
                ty, _c, _ttl, rdl = struct.unpack(">HHIH", data[off:off + 10])
                off += 10
                rd = data[off:off + rdl]
                off += rdl
                if ty == 1:
                    addrs.append(socket.inet_ntop(socket.AF_INET, rd))
                elif ty == 28:
                    addrs.append(socket.inet_ntop(socket.AF_INET6, rd))
            names = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}
            res = {"ok": True, "rcode": names.get(rcode, str(rcode)), "addrs": addrs}
    except (socket.timeout, TimeoutError):
        res = {"ok": False, "error": "timeout"}
    except OSError as e:
        res = {"ok": False, "error": e.strerror or str(e)}
    print(json.dumps(res))
    '''
)


def probe(ns, op, **args):
    """Run one probe inside namespace ns: tcp (HTTP GET), udp (echo), dns (query)."""
    r = netns_exec(ns, PY, "-c", _PROBE, op, json.dumps(args), check=False, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"probe {op} in {ns} failed: {r.stderr}")
    return json.loads(r.stdout)


def ping(ns, addr, timeout=1):
    """One ICMP echo from namespace ns (busybox ping); True if answered."""
    r = netns_exec(ns, "busybox", "ping" if ":" not in addr else "ping6", "-c", "1", "-W", str(timeout), addr,
                   check=False)
    return r.returncode == 0


class NetLab:
    """See module docstring. Use as a context manager, or call close()."""

    ZONE = "lab.test"

    def __init__(self, workdir, pool, records=None, port=None):
        self.tag = secrets.token_hex(3)
        self.workdir = str(workdir)
        self.pool = pool
        self.ns = f"nlab-{self.tag}"
        self.hveth = f"nlh-{self.tag}"
        self.lveth = f"nll-{self.tag}"
        self.table = str(random.randrange(20000, 30000))
        self.rule_prio = self.table
        self.port = port or random.randrange(20000, 40000)
        self.procs = []
        used = host_ipv4_addrs()
        routes = json.dumps(host_routes())
        k = next(k for k in random.sample(range(64), 64)
                 if f"198.51.100.{4 * k + 1}" not in used and f"198.51.100.{4 * k + 2}" not in used
                 and f"198.51.100.{4 * k}/30" not in routes)
        self.host_addr = f"198.51.100.{4 * k + 1}"
        self.lab_link_addr = f"198.51.100.{4 * k + 2}"
        m = next(m for m in random.sample(range(16), 16) if f"203.0.113.{16 * m}/28" not in routes)
        base = 16 * m
        self.services_net = f"203.0.113.{base}/28"
        self.dns_addr = f"203.0.113.{base + 2}"
        self.web = f"203.0.113.{base + 10}"        # www.lab.test, also api.lab.test
        self.web_unresolved = f"203.0.113.{base + 11}"  # in the zone's range, never in any answer
        self.web_other = f"203.0.113.{base + 12}"  # secret.lab.test: a name nobody allows
        self.web6 = f"2001:db8:{random.randrange(1, 0xffff):x}::10"
        self.records = {
            f"www.{self.ZONE}": self.web,
            f"api.{self.ZONE}": self.web,
            f"secret.{self.ZONE}": self.web_other,
            f"deep.www.{self.ZONE}": self.web,
            f"rebind.{self.ZONE}": "10.77.0.1",
        }
        if records:
            self.records.update(records)
        self.dns_log = os.path.join(self.workdir, f"labdns-{self.tag}.log")
        try:
            self._setup()
        except Exception:
            self.close()
            raise

    def _setup(self):
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.hveth, "type", "veth", "peer", "name", self.lveth, "netns", self.ns)
        sh("ip", "addr", "add", f"{self.host_addr}/30", "dev", self.hveth)
        sh("ip", "link", "set", self.hveth, "up")
        for cmd in (["link", "set", "lo", "up"],
                    ["addr", "add", f"{self.lab_link_addr}/30", "dev", self.lveth],
                    ["link", "set", self.lveth, "up"],
                    ["addr", "add", f"{self.dns_addr}/32", "dev", "lo"],
                    ["addr", "add", f"{self.web}/32", "dev", "lo"],
                    ["addr", "add", f"{self.web_unresolved}/32", "dev", "lo"],
                    ["addr", "add", f"{self.web_other}/32", "dev", "lo"],
                    ["-6", "addr", "add", f"{self.web6}/128", "dev", "lo"],
                    ["route", "add", "default", "via", self.host_addr]):
            sh("ip", "-n", self.ns, *cmd)
        # Lab routes only for traffic from the pod pool.
        sh("ip", "route", "add", self.services_net, "via", self.lab_link_addr, "dev", self.hveth, "onlink",
           "table", self.table)
        sh("ip", "rule", "add", "from", self.pool, "lookup", self.table, "priority", self.rule_prio)
        servers = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, PY, "-c", _SERVER,
             ",".join([self.web, self.web_unresolved, self.web_other, self.web6]), str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(servers)
        if servers.stdout.readline().strip() != "ready":
            raise RuntimeError("lab servers did not start: " + servers.stderr.read())
        argv = ["ip", "netns", "exec", self.ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                "--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={self.dns_addr}",
                "--port=53", "--log-queries", f"--log-facility={self.dns_log}", "--no-negcache",
                f"--pid-file={self.dns_log}.pid"]
        argv += [f"--host-record={n},{a}" for n, a in self.records.items()]
        argv += [f"--cname=alias.{self.ZONE},www.{self.ZONE}"]  # a CNAME, like CDN-hosted names
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            if os.path.exists(f"{self.dns_log}.pid"):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("lab dnsmasq did not start")

    def serve_on(self, addr):
        """Start the HTTP/UDP echo servers on one more lab address (already on the lab's lo)."""
        srv = subprocess.Popen(["ip", "netns", "exec", self.ns, PY, "-c", _SERVER, addr, str(self.port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(srv)
        if srv.stdout.readline().strip() != "ready":
            raise RuntimeError("lab server did not start: " + srv.stderr.read())

    def serve_files(self, addr, port, directory):
        """Serve the files under directory over HTTP on addr:port (a lab address); returns once
        it accepts connections. Stopped by close()."""
        srv = subprocess.Popen(["ip", "netns", "exec", self.ns, PY, "-c", _FILES, addr, str(port), directory],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(srv)
        if srv.stdout.readline().strip() != "ready":
            raise RuntimeError("lab file server did not start: " + srv.stderr.read())

    def dns_queries(self):
        """Names the lab DNS server was asked for (from its query log)."""
        try:
            with open(self.dns_log) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            parts = line.split()
            for i, p in enumerate(parts):
                if p.startswith("query[") and i + 1 < len(parts):
                    out.append(parts[i + 1])
        return out

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.procs = []
        sh("ip", "rule", "del", "from", self.pool, "lookup", self.table, "priority", self.rule_prio, check=False)
        sh("ip", "route", "flush", "table", self.table, check=False)
        if link_exists(self.hveth):
            sh("ip", "link", "del", self.hveth, check=False)
        if self.ns in netns_list():
            sh("ip", "netns", "del", self.ns, check=False)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class Guest:
    """A namespace that plays the guest: veth enslaved to the pod's bridge, addresses from info."""

    def __init__(self, info):
        self.tag = secrets.token_hex(3)
        self.ns = f"ngst-{self.tag}"
        self.gveth = f"ngg-{self.tag}"
        self.bport = f"ngb-{self.tag}"
        self.pod_ns = info["netns"]
        self.addr = info["guest_addr"]
        self.gateway = info["gateway"]
        self.dns_server = info["dns"]
        sh("ip", "netns", "add", self.ns)
        try:
            sh("ip", "link", "add", self.gveth, "netns", self.ns, "type", "veth", "peer", "name", self.bport,
               "netns", self.pod_ns)
            pod_bridge = "nub-" + info["tap"].split("-", 1)[1]
            sh("ip", "-n", self.pod_ns, "link", "set", self.bport, "master", pod_bridge)
            sh("ip", "-n", self.pod_ns, "link", "set", self.bport, "up")
            for cmd in (["link", "set", "lo", "up"],
                        ["addr", "add", f"{self.addr}/{info['guest_prefix']}", "dev", self.gveth],
                        ["link", "set", self.gveth, "up"],
                        ["route", "add", "default", "via", self.gateway]):
                sh("ip", "-n", self.ns, *cmd)
        except Exception:
            self.close()
            raise

    def tcp(self, addr, port, timeout=1.5):
        return probe(self.ns, "tcp", addr=addr, port=port, timeout=timeout)

    def udp(self, addr, port, timeout=1.5):
        return probe(self.ns, "udp", addr=addr, port=port, timeout=timeout)

    def dns(self, name, qtype=1, timeout=2.0, tcp=False):
        return probe(self.ns, "dns", server=self.dns_server, name=name, qtype=qtype, timeout=timeout, tcp=tcp)

    def ping(self, addr):
        return ping(self.ns, addr)

    def close(self):
        if self.ns in netns_list():
            sh("ip", "netns", "del", self.ns, check=False)


class PodNet:
    """One pod network through net-test-helper; commands go over its stdin."""

    def __init__(self, helper, state_dir, pool, pod_id, spec, dns_upstream=None, monitor_ms=None):
        self.pod_id = pod_id
        self.state_dir = str(state_dir)
        argv = [str(helper), "pod", "--state-dir", self.state_dir, "--pool", pool, "--pod-id", pod_id,
                "--spec", json.dumps(spec)]
        if dns_upstream:
            argv += ["--dns-upstream", dns_upstream]
        if monitor_ms:
            argv += ["--monitor-ms", str(monitor_ms)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("net-test-helper died: " + self.proc.stderr.read())
        self.info = json.loads(line)
        if "error" in self.info:
            self.proc.wait()
            raise RuntimeError("pod network setup failed: " + self.info["error"])

    def _cmd(self, c):
        self.proc.stdin.write(c + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def wait_event(self, timeout):
        """The next line the helper prints on its own (the drift monitor's report), or None."""
        import select
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def drift(self):
        return self._cmd("drift")

    def dns_events(self):
        """The queries the pod's DNS filter refused so far (what the node audits and counts)."""
        return self._cmd("dns_events")["dns_events"]

    def teardown(self):
        if self.proc.poll() is not None:
            return None
        r = self._cmd("teardown")
        self.proc.wait(timeout=30)
        return r

    def crash(self):
        """Kill the helper without teardown (what a node crash leaves behind)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def leftovers(info, state_dir):
    """Everything of a pod network still present on the machine (empty list = clean)."""
    left = []
    if info["netns"] in netns_list():
        left.append("netns " + info["netns"])
    short = info["tap"].split("-", 1)[1]
    for l in (info["host_veth"], f"nun-{short}"):
        if link_exists(l):
            left.append("link " + l)
    if sh("nft", "list", "table", "inet", f"nucleus_{short}", check=False).returncode == 0:
        left.append("table " + info["host_table"])
    pod_dir = os.path.join(str(state_dir), "pods", short)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if "dnsmasq" in cmd and pod_dir in cmd:
            left.append(f"process {pid} dnsmasq")
    alloc = os.path.join(str(state_dir), "alloc")
    if os.path.isdir(alloc) and os.listdir(alloc):
        left.append("allocations " + ",".join(os.listdir(alloc)))
    if os.path.exists(pod_dir):
        left.append("dir " + pod_dir)
    return left


if __name__ == "__main__":  # manual use: python3 netlab.py <pool>  (Ctrl-C to stop)
    with NetLab("/tmp", sys.argv[1]) as lab:
        print(json.dumps(lab.__dict__, default=str, indent=1))
        signal.pause()
