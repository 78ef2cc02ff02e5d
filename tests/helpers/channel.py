# SPDX-License-Identifier: Apache-2.0
"""Python client for the node <-> guest channel (docs/channel.md).

Used by proxy tests (X), guest boot tests over QEMU's virtio-serial unix socket (G) and node
tests (N). Example:

    with Channel.connect_unix(path, timeout=10) as ch:
        ch.configure({"policy": {...}, "pod_id": "p1"})
        r = ch.request("read", {"path": "README.md"})
        if "error" in r: ...
"""
import json
import os
import socket
import struct
import time

MAGIC = b"NU"
VERSION = 1
HEADER = struct.Struct(">2sBBIII")
MAX_PAYLOAD = 1024 * 1024

REQUEST, RESPONSE, DATA, END, EVENT, CANCEL, ERROR = 1, 2, 3, 4, 5, 6, 7
TYPE_NAMES = {1: "request", 2: "response", 3: "data", 4: "end", 5: "event", 6: "cancel", 7: "error"}


class ChannelError(Exception):
    pass


class ChannelClosed(ChannelError):
    pass


class ChannelTimeout(ChannelError):
    pass


def encode_frame(ftype, stream_id, payload=b"", version=VERSION, reserved=0, length=None):
    """Encode one frame. length/version/reserved can be overridden to build bad frames."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    return HEADER.pack(MAGIC, version, ftype, stream_id, n, reserved) + payload


class Frame:
    __slots__ = ("type", "stream", "payload")

    def __init__(self, ftype, stream, payload):
        self.type, self.stream, self.payload = ftype, stream, payload

    def json(self):
        return json.loads(self.payload.decode())

    def __repr__(self):
        p = self.payload[:80]
        return f"Frame({TYPE_NAMES.get(self.type, self.type)}, stream={self.stream}, {p!r})"


class FdSocket:
    """Socket-like adapter over a raw fd (pty master, pipe pair, char device) for Channel."""

    def __init__(self, rfd, wfd=None):
        self.rfd, self.wfd, self.timeout = rfd, rfd if wfd is None else wfd, None

    def settimeout(self, t):
        self.timeout = t

    def recv(self, n):
        import select
        r, _, _ = select.select([self.rfd], [], [], self.timeout)
        if not r:
            raise socket.timeout()
        try:
            return os.read(self.rfd, n)
        except OSError:
            return b""

    def sendall(self, data):
        view = memoryview(data)
        while view:
            k = os.write(self.wfd, view)
            view = view[k:]

    def close(self):
        for fd in {self.rfd, self.wfd}:
            try:
                os.close(fd)
            except OSError:
                pass


class Channel:
    """A framed connection over a connected stream socket (or any socket-like object)."""

    def __init__(self, sock, timeout=30.0):
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.next_stream = 1  # node side: odd ids
        self.events = []  # every event frame seen, in order
        self.pending = {}  # stream -> list of frames received but not yet consumed
        self.errors = []  # protocol error frames

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def connect_unix(cls, path, timeout=30.0, retry_for=0.0):
        """Connect to a unix socket; retry_for>0 keeps retrying until the socket accepts."""
        deadline = time.monotonic() + retry_for
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(path))
                return cls(s, timeout)
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    @classmethod
    def from_fd(cls, rfd, wfd=None, timeout=30.0):
        """Wrap an already open fd (or a read/write pair), e.g. a pty master or a FIFO."""
        return cls(FdSocket(rfd, wfd), timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- raw frames ------------------------------------------------------------------------
    def new_stream(self):
        s = self.next_stream
        self.next_stream += 2
        return s

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, ftype, stream_id, payload=b""):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload, separators=(",", ":")).encode()
        if len(payload) > MAX_PAYLOAD:
            raise ChannelError("payload over 1 MiB")
        self.sock.sendall(encode_frame(ftype, stream_id, payload))

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChannelTimeout("timed out waiting for a frame")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise ChannelTimeout("timed out waiting for a frame") from None
        except ConnectionResetError:
            raise ChannelClosed("connection reset") from None
        if not chunk:
            raise ChannelClosed("peer closed the channel")
        self.buf += chunk

    def read_frame(self, timeout=None):
        """Read the next frame from the wire (any stream). Raises ChannelTimeout/ChannelClosed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < HEADER.size:
            self._fill(deadline)
        magic, ver, ftype, sid, n, res = HEADER.unpack(self.buf[: HEADER.size])
        if magic != MAGIC or ver != VERSION or res != 0 or n > MAX_PAYLOAD:
            raise ChannelError(f"bad frame header from peer: {self.buf[:16]!r}")
        while len(self.buf) < HEADER.size + n:
            self._fill(deadline)
        payload = self.buf[HEADER.size : HEADER.size + n]
        self.buf = self.buf[HEADER.size + n :]
        f = Frame(ftype, sid, payload)
        if ftype == EVENT:
            self.events.append(f.json())
        elif ftype == ERROR:
            self.errors.append(f)
        return f

    def _next_for(self, stream_id, deadline):
        q = self.pending.get(stream_id)
        if q:
            return q.pop(0)
        while True:
            f = self.read_frame(timeout=max(0.0, deadline - time.monotonic()))
            if f.stream == stream_id and f.type != EVENT:
                return f
            if f.type != EVENT:
                self.pending.setdefault(f.stream, []).append(f)

    # -- requests --------------------------------------------------------------------------
    def start(self, op, args=None, stream_id=None):
        """Send a request; returns its stream id (do not wait)."""
        sid = self.new_stream() if stream_id is None else stream_id
        self.send(REQUEST, sid, {"op": op, "args": args or {}})
        return sid

    def wait(self, stream_id, timeout=None, collect_data=False):
        """Wait for the response on stream_id. With collect_data, also gather data frames
        (output streams) until the end frame, returning (response, bytes, end_json_or_None).
        Raises ChannelError if the peer answers with a protocol error frame on the stream."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        resp, data, end, ended = None, b"", None, not collect_data
        while resp is None or not ended:
            f = self._next_for(stream_id, deadline)
            if f.type == RESPONSE:
                resp = f.json()
                if "error" in resp:
                    ended = True
            elif f.type == DATA:
                data += f.payload
            elif f.type == END:
                ended = True
                end = f.json() if f.payload else None
            elif f.type == ERROR:
                raise ChannelError(f"protocol error on stream {stream_id}: {f.payload!r}")
        return (resp, data, end) if collect_data else resp

    def request(self, op, args=None, timeout=None):
        """Send a request and return its JSON response (a dict; errors have "kind")."""
        return self.wait(self.start(op, args), timeout=timeout)

    def request_stream_out(self, op, args=None, timeout=None):
        """A request whose output comes as data frames + end: returns (response, bytes, end)."""
        return self.wait(self.start(op, args), timeout=timeout, collect_data=True)

    def request_stream_in(self, op, args, data, timeout=None, chunk=256 * 1024):
        """A request that uploads data (e.g. import of a tar): request, data frames, end."""
        sid = self.start(op, args)
        for i in range(0, len(data), chunk):
            self.send(DATA, sid, data[i : i + chunk])
        self.send(END, sid)
        return self.wait(sid, timeout=timeout)

    def cancel(self, stream_id):
        self.send(CANCEL, stream_id)

    def configure(self, config, timeout=None):
        """Send configure; returns the response (raises if it is an error)."""
        r = self.request("configure", config, timeout=timeout)
        if "error" in r:
            raise ChannelError(f"configure failed: {r}")
        return r

    # -- events ----------------------------------------------------------------------------
    def wait_event(self, pred, timeout=None):
        """Return the first event (already seen or new) for which pred(event) is true."""
        for e in self.events:
            if pred(e):
                return e
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            seen = len(self.events)
            f = self.read_frame(timeout=max(0.0, deadline - time.monotonic()))
            if f.type == EVENT:
                if pred(self.events[-1]):
                    return self.events[-1]
            elif len(self.events) == seen:
                self.pending.setdefault(f.stream, []).append(f)

    def audit_events(self, op=None):
        return [e for e in self.events if e.get("type") == "audit" and (op is None or e.get("op") == op)]

    def drain_events(self, timeout=0.2):
        """Read whatever arrives within timeout (to collect trailing audit events)."""
        try:
            while True:
                f = self.read_frame(timeout=timeout)
                if f.type != EVENT:
                    self.pending.setdefault(f.stream, []).append(f)
        except ChannelTimeout:
            pass
        return self.events


def wait_for_path(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise ChannelTimeout(f"{path} did not appear")
        time.sleep(0.02)
