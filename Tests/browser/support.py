"""Processes, ports, a severable TCP proxy and small static servers for the browser tests."""

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICROSSE = os.environ.get("MICROSSE_BIN") or os.path.join(ROOT, ".build", "debug", "microsse")



class BrowserError(Exception):
    """Something the browser could not do (a page script threw, a navigation failed, ...)."""


def wait_until(fn, timeout, what, interval=0.02):
    """Polls fn until it returns something truthy, or fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except BrowserError as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


_children = []  # every process started, killed at exit whatever happens


def kill_all():
    for proc in list(_children):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    _children.clear()


def free_port():
    """A port free right now on 127.0.0.1 (for a server that must come back on the same port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Microsse:
    """One `microsse` process; .base is http://127.0.0.1:PORT parsed from what it prints."""

    URL = re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\]):(\d+)")

    def __init__(self, *args, port=0, timeout=15):
        self.args = [MICROSSE, *args, "--host", "127.0.0.1", "--port", str(port)]
        self.lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        _children.append(self.proc)
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

        def found():
            with self._cond:
                for line in self.lines:
                    m = self.URL.search(line)
                    if m and int(m.group(2)) != 0:
                        return int(m.group(2))
            if self.proc.poll() is not None:
                raise AssertionError(f"microsse exited with {self.proc.returncode}: {self.output()}")
            return None

        self.port = wait_until(found, timeout, f"microsse {' '.join(args)} to print its URL")
        self.base = f"http://127.0.0.1:{self.port}"

    def _pump(self, stream):
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def output(self):
        with self._cond:
            return "\n".join(self.lines[-30:])

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=10)


def publish(base, channel, data, event=None, use_curl=True, token=None):
    """POSTs one event; returns the id the hub assigned."""
    url = f"{base}/events/{channel}" + (f"?event={event}" if event else "")
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    if use_curl:
        extra = ["-H", f"Authorization: Bearer {token}"] if token else []
        r = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "-X", "POST", "--data-binary", "@-", "-H", "Content-Type: text/plain", *extra, url],
            input=data.encode(),
            capture_output=True,
            timeout=10,
        )
        if r.returncode != 0:
            raise AssertionError(f"curl POST {url} failed ({r.returncode}): {r.stdout.decode()} {r.stderr.decode()}")
        body = r.stdout
    else:
        req = urllib.request.Request(url, data=data.encode(), method="POST", headers={"Content-Type": "text/plain", **auth})
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
    return json.loads(body)["id"]


def http_get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def response_head(port, path, headers):
    """Sends one GET and returns (status, {lower-case header: value}) without reading the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    out = {}
    for line in head[1:]:
        k, _, v = line.partition(":")
        out[k.strip().lower()] = v.strip()
    return int(head[0].split(" ")[1]), out


class Proxy:
    """A TCP proxy between the browser and the hub that the test can cut.

    sever() closes every open connection at once (the browser sees its stream end with a
    network error); while down, new connections are accepted and closed at once; while holding,
    new connections are accepted and wait, unanswered, until release(). requests holds the
    request head of every connection, so the test sees what the browser sent.
    """

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.down = False
        self.holding = False
        self.held = 0  # connections that waited while holding
        self._held = []
        self.refused = 0
        self.refused_at = []  # monotonic times of connections refused while down
        self.requests = []  # raw request heads (str), in arrival order
        self._conns = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                self.refused_at.append(time.monotonic())
                _hard_close(client)
                continue
            with self._lock:
                if self.holding:
                    self._held.append(client)
                    self.held += 1
                    continue
            self._forward(client)

    def release(self):
        """Stops holding: the connections that waited are forwarded now."""
        with self._lock:
            self.holding = False
            held, self._held = self._held, []
        for client in held:
            self._forward(client)

    def _forward(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            upstream.settimeout(None)
        except OSError:
            _hard_close(client)
            return
        with self._lock:
            self._conns.append((client, upstream))
        threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, is_request):
        buf, skip = b"", 0  # request bytes not yet parsed; body bytes still to skip
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if is_request:
                    buf += data
                    while True:
                        if skip:
                            n = min(skip, len(buf))
                            buf, skip = buf[n:], skip - n
                            if skip:
                                break
                        if b"\r\n\r\n" not in buf:
                            break
                        head, buf = buf.split(b"\r\n\r\n", 1)
                        text = head.decode("latin-1")
                        m = re.search(r"(?im)^content-length:\s*(\d+)", text)
                        skip = int(m.group(1)) if m else 0
                        with self._lock:
                            self.requests.append(text)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def sever(self):
        with self._lock:
            conns, self._conns = self._conns, []
        for a, b in conns:
            _hard_close(a)
            _hard_close(b)
        return len(conns)

    def stream_requests(self, path_prefix):
        """Request heads whose request line is a GET of path_prefix..., as header dicts."""
        out = []
        with self._lock:
            heads = list(self.requests)
        for head in heads:
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) < 2 or parts[0] != "GET" or not parts[1].startswith(path_prefix):
                continue
            headers = {"_path": parts[1]}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            out.append(headers)
        return out

    def close(self):
        self._closed = True
        _hard_close(self.listener)
        self.sever()
        with self._lock:
            held, self._held = self._held, []
        for client in held:
            _hard_close(client)


def _hard_close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class StaticSite:
    """Serves one directory over HTTP on its own port: another origin for CORS tests."""

    def __init__(self, directory):
        handler = lambda *a, **kw: _QuietHandler(*a, directory=directory, **kw)  # noqa: E731
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def monotonic():
    return time.monotonic()
