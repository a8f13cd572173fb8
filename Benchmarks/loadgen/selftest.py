#!/usr/bin/env python3
"""Self-tests of the load generator: its counts are checked against servers with known output.

1. A stub that streams a scripted event sequence (python, stdlib only), framed several ways
   (chunks of 4096, 3 and 1 bytes, close-delimited), with every WHATWG parsing corner the
   loadgen must get right (CR / LF / CRLF line ends, CR and LF split across chunks, a BOM,
   comments, retry, unknown fields, multi-line data, `data` without a colon, empty data, id-only
   blocks, an id containing NUL, typed events). Subscriber 0's parsed events are compared one by
   one with the script, and every count is checked.
2. The same stub with a deliberate gap, a reorder and a duplicate, which must be reported.
3. A python mini hub that takes POSTs (answering with Content-Length and chunked 202s, split
   across writes): publisher + subscriber counts end to end, and once with one delivery dropped.
4. The C reference hub and the node hub, when built / present: a short clean run each.

usage: selftest.py [--loadgen PATH] [--c-hub PATH] [--node-hub PATH]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# ----------------------------------------------------------------------------------------------
# scripted streams


def bench_data(g, c, s, pad_to=64):
    d = "%d %d %d %d" % (g, c, s, time.monotonic_ns())
    if len(d) < pad_to:
        d += " " + "x" * (pad_to - len(d) - 1)
    return d


def script(kind):
    """Return (body_bytes, expected_events, expected_bench_per_sub, counts) for one subscriber.

    expected_events: list of (id, event, data) the WHATWG parser must dispatch, in order.
    """
    out = []      # raw text pieces
    events = []   # (id, event, data)
    last_id = ""
    ends = ["\n", "\r\n", "\r"]
    seqs = {0: [], 1: []}
    # two publisher streams: c=0 with 100 events, c=1 with 50, interleaved
    order = []
    for i in range(100):
        order.append((0, i))
        if i % 2 == 1:
            order.append((1, i // 2))
    if kind == "gap":
        order.remove((0, 50))
    elif kind == "reorder":
        a, b = order.index((0, 60)), order.index((0, 61))
        order[a], order[b] = order[b], order[a]
    elif kind == "dup":
        order.insert(order.index((0, 70)) + 1, (0, 70))
    out.append("\ufeff")  # BOM: dropped by the parser
    out.append(": hello comment\n")
    out.append("retry: 1500\n\n")  # retry only: no event
    g = 0
    for n, (c, s) in enumerate(order):
        e = ends[n % 3]
        ident = str(n + 1)
        if kind == "reorder":
            # a server that reorders delivers the swapped pair with their publish-order ids
            if (c, s) == (0, 60):
                ident = str(order.index((0, 61)) + 1)
            elif (c, s) == (0, 61):
                ident = str(order.index((0, 60)) + 1)
        data = bench_data(g, c, s, 64 if n % 5 else 200)
        g += 1
        if n % 7 == 3:  # field without the optional space, and an id with no space
            out.append("id:" + ident + e + "data:" + data + e + e)
        else:
            out.append("id: " + ident + e + "data: " + data + e + e)
        last_id = ident
        events.append((ident, "", data))
        seqs[c].append(s)
        if n == 10:
            out.append(": keep-alive" + e)
            out.append("event: other" + e + "data: 0 0 0 0" + e + e)  # typed event: foreign
            events.append((last_id, "other", "0 0 0 0"))
        if n == 20:
            out.append("data: line one" + e + "data: line two" + e + "data:  leading space" + e + e)
            events.append((last_id, "", "line one\nline two\n leading space"))
        if n == 30:
            out.append("data" + e + e)  # no colon: empty data line → an event with empty data
            events.append((last_id, "", ""))
        if n == 40:
            out.append("data:" + e + "data:" + e + e)  # two empty lines → "\n"
            events.append((last_id, "", "\n"))
        if n == 50:
            out.append("id: 999999" + e + e)  # id only: no event, but the id buffer changes
            last_id = "999999"
        if n == 51:
            out.append("unknown: field" + e + "retry: abc" + e)  # ignored lines inside an event
        if n == 60 and kind == "clean":
            out.append("id: 12\x003" + e)  # id with NUL: ignored
    text = "".join(out)
    bench = len(order)
    foreign = 4
    return text.encode("utf-8"), events, bench, foreign, seqs


# ----------------------------------------------------------------------------------------------
# stub servers


class Stub:
    """Tiny threaded HTTP server on 127.0.0.1; `handler(conn)` is called after the request head."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.threads = []
        t = threading.Thread(target=self.accept_loop, daemon=True)
        t.start()

    def accept_loop(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self.serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def serve(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.sock.close()


def read_head(c, buf=b""):
    c.settimeout(30)
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            return None, b""
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def stream_handler(body, chunk, mode):
    def handle(c):
        head, _ = read_head(c)
        if head is None or not head.startswith("GET /events/"):
            c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        if mode == "close":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            for i in range(0, len(body), chunk):
                c.sendall(body[i:i + chunk])
            return
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        pieces = []
        for i in range(0, len(body), chunk):
            part = body[i:i + chunk]
            ext = b";ext=1" if (i // chunk) % 11 == 5 else b""
            pieces.append(b"%x%s\r\n%s\r\n" % (len(part), ext, part))
        pieces.append(b"0\r\n\r\n")
        # several chunks per write, so chunk headers also straddle read boundaries
        blob = b"".join(pieces)
        step = 997
        for i in range(0, len(blob), step):
            c.sendall(blob[i:i + step])
            if i % (step * 8) == 0:
                time.sleep(0.001)
        time.sleep(0.2)
    return handle


class MiniHub:
    """A minimal pub/sub hub: POST /events/x → 202, broadcast to every subscriber. It listens on
    `ports` ports sharing one state (hubs sharing channels) and keeps every event for
    `Last-Event-ID` resume; `resume_from_start` replays the whole history instead (a broken
    resume: duplicates)."""

    def __init__(self, drop_g=None, ports=1, resume_from_start=False):
        self.lock = threading.Lock()
        self.subs = []
        self.next_id = 1
        self.drop_g = drop_g
        self.nresp = 0
        self.history = []
        self.resume_from_start = resume_from_start
        self.gets = [0] * ports
        self.resumes = 0
        self.targets = []  # subscribers' request targets
        self.forms = []  # Mercure publishes: (topic, Authorization)
        self.stubs = [Stub(lambda c, i=i: self.handle(c, i)) for i in range(ports)]
        self.stub = self.stubs[0]
        self.port = self.stub.port
        self.ports = [st.port for st in self.stubs]

    def handle(self, c, port_index=0):
        head, rest = read_head(c)
        if head is None:
            return
        if head.startswith("GET /healthz"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            return
        if head.startswith("GET /events/") or head.startswith("GET /.well-known/mercure?"):
            self.targets.append(head.split(" ")[1])
            last = None
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "last-event-id":
                    last = int(v.strip())
            with self.lock:
                self.gets[port_index] += 1
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                if last is not None:
                    self.resumes += 1
                    for ident, frame in self.history:
                        if ident > last or self.resume_from_start:
                            c.sendall(frame)
                self.subs.append(c)
            c.settimeout(None)
            while c.recv(1024):
                pass
            with self.lock:
                self.subs.remove(c)
            return
        while head is not None:  # keep-alive publisher connection
            clen = 0
            auth = None
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    clen = int(v)
                if k.strip().lower() == "authorization":
                    auth = v.strip()
            mercure = head.startswith("POST /.well-known/mercure ")
            while len(rest) < clen:
                d = c.recv(65536)
                if not d:
                    return
                rest += d
            body, rest = rest[:clen], rest[clen:]
            data = body.decode()
            if mercure:  # a form: topic=...&data=... (Mercure), answered 200 with the id
                form = urllib.parse.parse_qs(data)
                data = form["data"][0]
                self.forms.append((form["topic"][0], auth))
            with self.lock:
                ident = self.next_id
                self.next_id += 1
                ev = ("id: %d\ndata: %s\n\n" % (ident, data)).encode()
                frame = b"%x\r\n%s\r\n" % (len(ev), ev)
                self.history.append((ident, frame))
                g = int(data.split(" ", 1)[0])
                for i, s in enumerate(self.subs):
                    if self.drop_g == g and i == 0:
                        continue
                    try:
                        s.sendall(frame)
                    except OSError:
                        pass
                self.nresp += 1
                n = self.nresp
            js = b'{"id":"%d"}' % ident
            if mercure:
                resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%d" % (
                    len(str(ident)), ident)
            elif n % 2:
                resp = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(js), js)
            else:
                resp = (b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"%x\r\n%s\r\n0\r\n\r\n" % (len(js), js))
            cut = len(resp) // 2 if n % 3 == 0 else len(resp)
            c.sendall(resp[:cut])
            if cut < len(resp):
                time.sleep(0.0005)
                c.sendall(resp[cut:])
            head, rest = read_head(c, rest)

    def close(self):
        for st in self.stubs:
            st.close()
        with self.lock:
            for s in self.subs:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# ----------------------------------------------------------------------------------------------

FAILS = []


def check(name, cond, detail=""):
    print("  %s %s%s" % ("ok  " if cond else "FAIL", name, (" — " + detail) if detail and not cond else ""))
    if not cond:
        FAILS.append(name)


def run_loadgen(loadgen, args, timeout=60):
    p = subprocess.run([loadgen] + args, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("loadgen exited %d: %s" % (p.returncode, p.stderr[-2000:]))
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1]), p.stderr


def test_stream(loadgen, kind, chunk, mode, nsubs=5):
    label = "%s/%s/chunk=%d" % (kind, mode, chunk)
    print("stream %s" % label)
    body, events, bench, foreign, seqs = script(kind)  # one script: the stub serves it to every subscriber
    stub = Stub(stream_handler(body, chunk, mode))
    try:
        expect = {"clean": 150, "gap": 149, "reorder": 150, "dup": 151}[kind]
        r, err = run_loadgen(loadgen, ["--port", str(stub.port), "--subs", str(nsubs), "--expect", "150",
                                       "--expect-end", "--drain", "20", "--dump", "--label", label])
    finally:
        stub.close()
    check("all %d subscribers established" % nsubs, r["established"] == nsubs, str(r))
    check("streams ended by the server, cleanly", r["sub_ended_cleanly"] == nsubs and r["sub_closed_by_server"] == 0, str(r))
    check("benchmark deliveries = %d x %d" % (expect, nsubs), r["deliveries"] == expect * nsubs, "got %d" % r["deliveries"])
    check("foreign events = %d x %d" % (foreign, nsubs), r["foreign"] == foreign * nsubs, "got %d" % r["foreign"])
    check("events = deliveries + foreign", r["events"] == r["deliveries"] + r["foreign"])
    check("comments counted", r["comments"] == 2 * nsubs, "got %d" % r["comments"])
    check("no protocol errors", r["protocol_errors"] == 0)
    check("latency measured and sane (< 5 s)", r["lat_n"] == r["deliveries"] and 0 <= r["lat_max_us"] < 5e6, str(r["lat_max_us"]))
    want = {
        "clean": dict(gaps=0, missing_in_gaps=0, out_of_order=0, lost=0, duplicates=0, id_regress=0, ok=True),
        "gap": dict(gaps=1, missing_in_gaps=1, out_of_order=0, lost=1, duplicates=0, id_regress=0, ok=False),
        "reorder": dict(gaps=1, missing_in_gaps=1, out_of_order=1, lost=0, duplicates=0, id_regress=1, ok=False),
        "dup": dict(gaps=0, missing_in_gaps=0, out_of_order=1, lost=0, duplicates=1, id_regress=0, ok=False),
    }[kind]
    for k, v in want.items():
        exp = v * nsubs if isinstance(v, int) and not isinstance(v, bool) else v
        check("%s = %s" % (k, exp), r[k] == exp, "got %s" % r[k])
    got = [json.loads(l) for l in err.splitlines() if l.startswith("{")]
    check("subscriber 0 dispatched %d events" % len(events), len(got) == len(events), "got %d" % len(got))
    bad = 0
    for (ident, evname, data), g in zip(events, got):
        if g["id"] != ident or g["event"] != evname or g["data_len"] != len(data.encode()) or g["data_head"] != data[:128]:
            if bad < 3:
                print("    mismatch: want %r got %r" % ((ident, evname, len(data), data[:40]), g))
            bad += 1
    check("every dispatched event matches the script (id, event, data)", bad == 0, "%d mismatches" % bad)


def test_minihub(loadgen, drop):
    label = "minihub%s" % (" drop g=100" if drop else "")
    print(label)
    hub = MiniHub(drop_g=100 if drop else None)
    try:
        r, _ = run_loadgen(loadgen, ["--port", str(hub.port), "--subs", "8", "--events", "300", "--pub-conns", "3",
                                     "--window", "16", "--duration", "20", "--drain", "3", "--label", label])
    finally:
        hub.close()
    check("8 subscribers established", r["established"] == 8)
    check("300 published, all 202", r["published"] == 300 and r["pub_errors"] == 0, str(r))
    if not drop:
        check("deliveries = 300 x 8 and ok", r["deliveries"] == 2400 and r["ok"] is True, str(r))
        check("no gaps / reorders / losses", r["gaps"] == 0 and r["out_of_order"] == 0 and r["lost"] == 0)
    else:
        check("one delivery missing: deliveries = 2399", r["deliveries"] == 2399, str(r["deliveries"]))
        check("detected: lost = 1, ok = false", r["lost"] == 1 and r["ok"] is False, str(r))
        check("the gap is seen on one connection (gaps = 1)", r["gaps"] == 1, str(r["gaps"]))


def test_subports(loadgen):
    print("minihub on 3 ports (--sub-ports)")
    hub = MiniHub(ports=3)
    try:
        r, _ = run_loadgen(loadgen, ["--port", str(hub.ports[1]), "--sub-ports", ",".join(map(str, hub.ports)),
                                     "--subs", "9", "--events", "200", "--pub-conns", "2", "--window", "8",
                                     "--duration", "20", "--drain", "3"])
    finally:
        hub.close()
    check("9 subscribers spread 3/3/3 over the ports", hub.gets == [3, 3, 3], str(hub.gets))
    check("200 x 9 delivered, ok, sub_ports = 3", r["ok"] is True and r["deliveries"] == 1800 and r["sub_ports"] == 3,
          str(r))


def test_mercure(loadgen):
    print("minihub, Mercure (--mercure-topic, --pub-token, --sub-path with {i})")
    hub = MiniHub()
    try:
        r, _ = run_loadgen(loadgen, ["--port", str(hub.port), "--subs", "4", "--events", "100", "--pub-conns", "2",
                                     "--window", "8", "--duration", "20", "--drain", "3", "--size", "80",
                                     "--sub-path", "/.well-known/mercure?match_urlpattern=p{i}q%7Bi%7D",
                                     "--mercure-topic", "https://ex.example/a b&c", "--pub-token", "T0K"])
    finally:
        hub.close()
    check("subscriber i asked for p<i>q{i}", sorted(hub.targets) == [
        "/.well-known/mercure?match_urlpattern=p%dq%%7Bi%%7D" % i for i in range(4)], str(hub.targets))
    check("100 form publishes of the topic, each with the token",
          len(hub.forms) == 100 and set(hub.forms) == {("https://ex.example/a b&c", "Bearer T0K")}, str(hub.forms[:2]))
    check("100 x 4 delivered (200 answers counted), ok", r["ok"] is True and r["deliveries"] == 400
          and r["published"] == 100 and r["pub_errors"] == 0, str(r))


def test_storm(loadgen, broken):
    label = "minihub resume storm%s" % (" (hub replays from the start)" if broken else "")
    print(label)
    hub = MiniHub(resume_from_start=broken)
    try:
        r, _ = run_loadgen(loadgen, ["--port", str(hub.port), "--subs", "12", "--storm-subs", "8", "--storm-at", "0.5",
                                     "--events", "100", "--rate", "100", "--pub-conns", "2", "--duration", "5",
                                     "--drain", "3", "--label", label])
    finally:
        hub.close()
    check("8 reconnects, each with Last-Event-ID", hub.resumes == 8 and sum(hub.gets) == 20, "%d %s" % (hub.resumes, hub.gets))
    check("storm: 8 live again and caught up, times measured",
          r["storm_live"] == 8 and r["storm_caught"] == 8 and 0 <= r["storm_live_s"] <= r["storm_caught_s"], str(r))
    check("steady latency split before / during-or-after the storm",
          r["storm_lat_before_n"] > 0 and r["storm_lat_during_n"] + r["storm_lat_after_n"] > 0 and
          r["storm_lat_before_n"] + r["storm_lat_during_n"] + r["storm_lat_after_n"] == 400, str(r))
    check("established stays 12", r["established"] == 12, str(r["established"]))
    if not broken:
        check("exact resume: 100 x 12 delivered, ok", r["ok"] is True and r["deliveries"] == 1200 and r["lost"] == 0 and
              r["duplicates"] == 0, str(r))
    else:
        check("replay from the start detected: duplicates, ok = false",
              r["ok"] is False and r["duplicates"] > 0 and r["out_of_order"] > 0, str(r))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_health(port, deadline=10.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def test_server(loadgen, name, cmd):
    print("%s (real server)" % name)
    port = free_port()
    p = subprocess.Popen([a.replace("{port}", str(port)) for a in cmd], stderr=subprocess.DEVNULL)
    try:
        check("%s answers /healthz" % name, wait_health(port))
        r, _ = run_loadgen(loadgen, ["--port", str(port), "--subs", "20", "--events", "2000", "--pub-conns", "4",
                                     "--window", "32", "--duration", "20", "--server-pid", str(p.pid)])
        check("fast publish: 2000 x 20 delivered in order, ok", r["ok"] is True and r["deliveries"] == 40000, str(r))
        check("server CPU and RSS sampled", r["server_cpu_s"] >= 0 and r["server_rss_kb_end"] > 0)
        r, _ = run_loadgen(loadgen, ["--port", str(port), "--subs", "20", "--events", "100", "--rate", "200",
                                     "--pub-conns", "2", "--duration", "5"])
        check("fixed rate: 100 events at 200/s, ok", r["ok"] is True and r["deliveries"] == 2000, str(r))
        check("fixed rate: publishing took about 0.5 s", 0.4 < r["pub_s"] < 1.5, str(r["pub_s"]))
        r, _ = run_loadgen(loadgen, ["--port", str(port), "--subs", "50", "--hold", "0.5", "--server-pid", str(p.pid)])
        check("idle hold: 50 established", r["ok"] is True and r["established"] == 50, str(r))
    finally:
        p.send_signal(2)
        try:
            rc = p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "hung"
        check("%s exits 0 on SIGINT" % name, rc == 0, str(rc))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loadgen", default=os.path.join(HERE, "loadgen"))
    ap.add_argument("--c-hub", default=os.path.join(ROOT, "reference", "c-hub", "c-hub"))
    ap.add_argument("--node-hub", default=os.path.join(ROOT, "reference", "node-hub", "hub.js"))
    a = ap.parse_args()
    for kind, chunk, mode in [("clean", 4096, ""), ("clean", 3, ""), ("clean", 1, ""), ("clean", 7, "close"),
                              ("gap", 4096, ""), ("reorder", 64, ""), ("dup", 4096, "")]:
        test_stream(a.loadgen, kind, chunk, mode)
    test_minihub(a.loadgen, False)
    test_minihub(a.loadgen, True)
    test_subports(a.loadgen)
    test_mercure(a.loadgen)
    test_storm(a.loadgen, False)
    test_storm(a.loadgen, True)
    if os.path.exists(a.c_hub):
        test_server(a.loadgen, "c-hub", [a.c_hub, "--port", "{port}"])
    else:
        print("c-hub not built: skipped")
    if shutil.which("node") and os.path.exists(a.node_hub):
        test_server(a.loadgen, "node-hub", ["node", a.node_hub, "--port", "{port}"])
    else:
        print("node not found: node-hub skipped")
    print()
    if FAILS:
        print("selftest: %d check(s) FAILED: %s" % (len(FAILS), ", ".join(FAILS)))
        sys.exit(1)
    print("selftest: all checks passed")


if __name__ == "__main__":
    main()
