#!/usr/bin/env python3
"""Soak driver for MicroSSE: runs the real `microsse serve` under mixed load for a fixed time
and fails if memory, file descriptors or threads grow without bound, or if any event the hub
acknowledged (202 with an id) is missing from a subscriber that stayed to the end.

Load, all at once:
  - publishers POST to several channels with the bearer token and record every acknowledged id;
  - verifying subscribers (one per channel and one on all channels) read everything; when cut
    off they resume with Last-Event-ID, so they must end up with every acknowledged event,
    in publish order, with no duplicates and no gap event;
  - churners join and leave (clean close), reset (RST), resume from old ids, and send garbage;
  - slow readers subscribe with a tiny receive buffer and never read (the server must drop
    them by its buffer bound / write timeout, not hold their data for ever).
Every SAMPLE seconds it records the server's VmRSS, open fds and threads (/proc/PID).

Usage: soak.py --binary PATH --seconds N --out DIR   (writes DIR/soak.md and DIR/soak.tsv)
"""
import argparse, http.client, json, os, random, re, shutil, socket, struct, subprocess, sys, threading, time

TOKEN = "soak-token"
CHANNELS = ["alpha", "beta", "gamma", "delta"]


def proc_sample(pid):
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds, threads


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {c: [] for c in CHANNELS}  # channel -> [(id, data)] in ack order
        self.publish_errors = 0
        self.published = 0
        self.churn = {"joined": 0, "reset": 0, "garbage": 0, "resumed": 0, "slow": 0, "errors": 0}
        self.verifier_reconnects = 0
        self.failures = []

    def bump(self, key, n=1):
        with self.lock:
            self.churn[key] += n


def sse_events(buf):
    """Splits complete SSE blocks off `buf` (server writes LF only); returns (events, rest)."""
    events = []
    while True:
        i = buf.find(b"\n\n")
        if i < 0:
            return events, buf
        block, buf = buf[:i], buf[i + 2:]
        ev = {"data": [], "event": None, "id": None}
        for line in block.split(b"\n"):
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                ev["data"].append(value.decode())
            elif name == b"event":
                ev["event"] = value.decode()
            elif name == b"id":
                ev["id"] = value.decode()
        if ev["data"] or ev["event"]:
            ev["data"] = "\n".join(ev["data"])
            events.append(ev)


def open_stream(port, path, last_id=None, rcvbuf=None, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    req = f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
    if last_id:
        req += f"Last-Event-ID: {last_id}\r\n"
    s.sendall((req + "\r\n").encode())
    return s


class Dechunker:
    def __init__(self):
        self.raw = b""
        self.out = b""
        self.head_done = False
        self.status = None

    def feed(self, data):
        self.raw += data
        if not self.head_done:
            i = self.raw.find(b"\r\n\r\n")
            if i < 0:
                return
            head, self.raw = self.raw[:i], self.raw[i + 4:]
            self.status = int(head.split(b" ")[1])
            self.head_done = True
        while True:
            i = self.raw.find(b"\r\n")
            if i < 0:
                return
            size = int(self.raw[:i].split(b";")[0], 16)
            if len(self.raw) < i + 2 + size + 2:
                return
            self.out += self.raw[i + 2:i + 2 + size]
            self.raw = self.raw[i + 2 + size + 2:]
            if size == 0:
                return


class Verifier(threading.Thread):
    """Stays to the end, resumes when cut off, keeps every event it receives."""

    def __init__(self, port, channels, stats, stop):
        super().__init__(daemon=True)
        self.port, self.channels, self.stats, self.stop = port, channels, stats, stop
        self.received = []  # (channel-agnostic) ids in arrival order with data
        self.last_id = None
        self.gaps = []
        self.connected = threading.Event()

    def path(self):
        if len(self.channels) == 1:
            return f"/events/{self.channels[0]}"
        return "/events?" + "&".join(f"channel={c}" for c in self.channels)

    def run(self):
        while not self.stop.is_set():
            try:
                s = open_stream(self.port, self.path(), self.last_id, timeout=1)
                d = Dechunker()
                while not self.stop.is_set():
                    try:
                        data = s.recv(65536)
                    except socket.timeout:
                        continue
                    if not data:
                        break
                    d.feed(data)
                    if d.status is not None:
                        if d.status != 200:
                            break
                        self.connected.set()
                    evs, d.out = sse_events(d.out)
                    for ev in evs:
                        if ev["event"] == "microsse.gap":
                            self.gaps.append(ev["data"])
                            continue
                        self.received.append((ev["id"], ev["data"]))
                        self.last_id = ev["id"]
                s.close()
            except OSError:
                pass
            if not self.stop.is_set():
                with self.stats.lock:
                    self.stats.verifier_reconnects += 1
                time.sleep(0.2)

    def drain_until(self, want_ids, deadline):
        while time.time() < deadline:
            got = {i for i, _ in self.received}
            if want_ids <= got:
                return True
            time.sleep(0.2)
        return False


def publisher(port, stats, stop, rate, seed):
    rnd = random.Random(seed)
    conn = None
    n = 0
    while not stop.is_set():
        ch = rnd.choice(CHANNELS)
        size = rnd.choice([1, 10, 100, 1000, 10000])
        data = f"{seed}-{n} " + "x" * size + ("\nsecond line" if n % 7 == 0 else "")
        n += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", f"/events/{ch}", body=data.encode(),
                         headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
            r = conn.getresponse()
            body = r.read()
            if r.status == 202:
                eid = json.loads(body)["id"]
                with stats.lock:
                    stats.acked[ch].append((eid, data))
                    stats.published += 1
            else:
                with stats.lock:
                    stats.publish_errors += 1
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            with stats.lock:
                stats.publish_errors += 1
            conn = None
        time.sleep(rnd.expovariate(rate))


def churner(port, stats, stop, seed):
    rnd = random.Random(seed)
    while not stop.is_set():
        kind = rnd.random()
        try:
            if kind < 0.35:  # join, read a little, leave cleanly
                s = open_stream(port, f"/events/{rnd.choice(CHANNELS)}", timeout=2)
                s.recv(4096)
                time.sleep(rnd.random() * 0.5)
                s.close()
                stats.bump("joined")
            elif kind < 0.65:  # join and reset
                s = open_stream(port, "/events?channel=alpha&channel=beta", timeout=2)
                s.recv(4096)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                stats.bump("reset")
            elif kind < 0.8:  # resume from an old id
                with stats.lock:
                    acked = stats.acked["gamma"]
                    old = acked[rnd.randrange(len(acked))][0] if acked else "1"
                s = open_stream(port, "/events/gamma", last_id=old, timeout=2)
                s.recv(65536)
                s.close()
                stats.bump("resumed")
            else:  # garbage, a half request, or an oversized header, then reset
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(rnd.choice([b"\x00\xff garbage\r\n\r\n", b"GET /events/x HTTP/1.1\r\nHo",
                                      b"GET / HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n",
                                      b"POST /events/alpha HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"]))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                stats.bump("garbage")
        except OSError:
            stats.bump("errors")
        time.sleep(rnd.random() * 0.05)


def slow_readers(port, stats, stop):
    """Keeps a few subscribers that never read; replaces them when the server drops them."""
    held = []
    rounds = 0
    while not stop.is_set():
        rounds += 1
        if rounds % 15 == 0:  # every 30 s, a fresh set (the old ones are dropped or closed)
            for s in held:
                s.close()
            held = []
        while len(held) < 8:
            try:
                held.append(open_stream(port, "/events/delta", rcvbuf=4096, timeout=2))
                stats.bump("slow")
            except OSError:
                stats.bump("errors")
                break
        alive = []
        for s in held:
            s.setblocking(False)
            try:
                # Peek only: a slow reader never consumes; EOF or reset means the server dropped it.
                if s.recv(1, socket.MSG_PEEK) == b"":
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            alive.append(s)
        held = alive
        stop.wait(2)
    for s in held:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--sample", type=float, default=5)
    ap.add_argument("--out", default=".build/reliability")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Run a private copy: the shared tree's binary may be rebuilt (overwritten) during the soak.
    binary = os.path.join(args.out, "soak-microsse")
    shutil.copy2(args.binary, binary)
    server_log = open(os.path.join(args.out, "soak-server.log"), "w")
    server = subprocess.Popen(
        [binary, "serve", "--port", "0", "--publish-token", TOKEN, "--history", "5000",
         "--history-bytes", str(16 << 20), "--heartbeat", "2", "--write-timeout", "4",
         "--client-buffer-bytes", str(256 << 10), "--max-publish-bytes", str(64 << 10)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = None
    start_wait = time.time()
    while port is None and time.time() - start_wait < 20:
        line = server.stdout.readline()
        server_log.write(line)
        m = re.search(r"://[^\s/]*:(\d+)", line)
        if m:
            port = int(m.group(1))
    if port is None:
        print("soak: server printed no URL", file=sys.stderr)
        server.kill()
        return 2
    def drain():
        for line in server.stdout:
            server_log.write(line)
            server_log.flush()

    threading.Thread(target=drain, daemon=True).start()

    stats = Stats()
    stop_all = threading.Event()
    stop_load = threading.Event()
    verifiers = [Verifier(port, [c], stats, stop_all) for c in CHANNELS]
    verifiers.append(Verifier(port, CHANNELS, stats, stop_all))
    for v in verifiers:
        v.start()
    for v in verifiers:
        v.connected.wait(10)
    load = [threading.Thread(target=publisher, args=(port, stats, stop_load, 60, i), daemon=True) for i in range(4)]
    load += [threading.Thread(target=churner, args=(port, stats, stop_load, 100 + i), daemon=True) for i in range(6)]
    load.append(threading.Thread(target=slow_readers, args=(port, stats, stop_load), daemon=True))

    samples = []
    t0 = time.time()
    samples.append((0.0,) + proc_sample(server.pid) + (0,))
    for t in load:
        t.start()
    next_sample = t0 + args.sample
    while time.time() - t0 < args.seconds:
        if server.poll() is not None:
            stats.failures.append(f"server exited with status {server.returncode}")
            break
        time.sleep(max(0, next_sample - time.time()))
        next_sample += args.sample
        with stats.lock:
            published = stats.published
        try:
            samples.append((time.time() - t0,) + proc_sample(server.pid) + (published,))
        except OSError:
            continue
    stop_load.set()
    for t in load:
        t.join(15)
    duration = time.time() - t0

    # Every acknowledged event must reach the verifiers that stayed.
    with stats.lock:
        acked = {c: list(v) for c, v in stats.acked.items()}
    missing = {}
    for v in verifiers:
        want = {i for c in v.channels for i, _ in acked[c]}
        v.drain_until(want, time.time() + 30)
        got = [i for i, _ in v.received]
        miss = want - set(got)
        if miss:
            missing[v.path()] = len(miss)
        if len(got) != len(set(got)):
            stats.failures.append(f"{v.path()}: {len(got) - len(set(got))} duplicate events")
        if v.gaps:
            stats.failures.append(f"{v.path()}: gap events {v.gaps[:3]}")
        # Publish order: server-assigned ids increase with publish order, across channels too,
        # so every verifier (one channel or several) must see them strictly increasing.
        seq = [int(i) for i in got if i is not None and i.isdigit()]
        if any(b <= a for a, b in zip(seq, seq[1:])):
            stats.failures.append(f"{v.path()}: events out of publish order")
        data_by_id = {i: d for c in v.channels for i, d in acked[c]}
        wrong = sum(1 for i, d in v.received if i in data_by_id and data_by_id[i] != d)
        if wrong:
            stats.failures.append(f"{v.path()}: {wrong} events with altered data")
    if missing:
        stats.failures.append(f"acknowledged events missing: {missing}")

    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/stats")
        server_stats = json.loads(c.getresponse().read())
        c.close()
    except (OSError, ValueError, http.client.HTTPException):
        server_stats = {}
    if duration >= 120 and server_stats.get("drops", 0) == 0:
        stats.failures.append("no slow subscriber was ever dropped")

    # Quiesced: load stopped, churners gone; the server should be back near its start.
    time.sleep(6)  # two heartbeat periods and a write timeout reveal dead peers
    try:
        quiet = proc_sample(server.pid)
    except OSError:
        quiet = (0, 0, 0)
        stats.failures.append(f"server gone before the end (status {server.poll()}; see soak-server.log)")
    stop_all.set()
    for v in verifiers:
        v.join(5)
    server.send_signal(2)
    try:
        rc = server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        rc = "killed after 15 s"
    if rc != 0:
        stats.failures.append(f"server did not exit cleanly on SIGINT: {rc}")

    # Growth: compare the second half of the run with the first half after warm-up.
    body = [s for s in samples if s[0] >= min(60, duration / 4)]
    half = len(body) // 2
    if half >= 2:
        first = body[:half]
        second = body[half:]
        rss_first = max(s[1] for s in first)
        rss_second = max(s[1] for s in second)
        if rss_second > rss_first * 1.25 + 16 * 1024:
            stats.failures.append(f"RSS grew from {rss_first} KiB (first half peak) to {rss_second} KiB")
        fd_first = max(s[2] for s in first)
        fd_second = max(s[2] for s in second)
        if fd_second > fd_first * 1.5 + 50:
            stats.failures.append(f"fds grew from {fd_first} to {fd_second}")
    start = samples[0]
    if quiet[1] > start[2] + 10:
        stats.failures.append(f"fds after load stopped {quiet[1]} vs {start[2]} at start")
    if quiet[2] > start[3] + 4:
        stats.failures.append(f"threads after load stopped {quiet[2]} vs {start[3]} at start")

    with open(os.path.join(args.out, "soak.tsv"), "w") as f:
        f.write("seconds\trss_kib\tfds\tthreads\tpublished\n")
        for s in samples:
            f.write("%.0f\t%d\t%d\t%d\t%d\n" % s)
    peak = max(samples, key=lambda s: s[1])
    total_acked = sum(len(v) for v in acked.values())
    verdict = "**passed**" if not stats.failures else "**FAILED**: " + "; ".join(stats.failures)
    lines = [
        f"- run: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {duration:.0f} s of load "
        f"(`scripts/soak.sh`, SOAK_SECONDS={args.seconds}), samples every {args.sample:g} s "
        f"(`.build/reliability/soak.tsv`)",
        f"- result: {verdict}",
        f"- load: 4 publishers → {total_acked:,} events acknowledged ({stats.publish_errors} publish errors); "
        f"5 verifying subscribers ({stats.verifier_reconnects} reconnects); churn: "
        + ", ".join(f"{k} {v:,}" for k, v in stats.churn.items()),
        f"- server /stats at the end of load: "
        + ", ".join(f"{k} {v:,}" for k, v in server_stats.items() if isinstance(v, int)),
        f"- every acknowledged event reached every verifying subscriber: "
        f"{'yes' if not missing else 'NO ' + str(missing)}",
        "",
        "| | RSS | fds | threads |",
        "|---|---|---|---|",
        f"| start | {start[1] / 1024:.1f} MiB | {start[2]} | {start[3]} |",
        f"| peak RSS (at {peak[0]:.0f} s) | {peak[1] / 1024:.1f} MiB | {peak[2]} | {peak[3]} |",
        f"| end of load | {samples[-1][1] / 1024:.1f} MiB | {samples[-1][2]} | {samples[-1][3]} |",
        f"| load stopped, 6 s later | {quiet[0] / 1024:.1f} MiB | {quiet[1]} | {quiet[2]} |",
    ]
    # The curve, about ten points, so growth (or a plateau) can be seen without the TSV.
    step = max(1, len(samples) // 10)
    curve = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    lines += [
        "",
        "| seconds | " + " | ".join(f"{s[0]:.0f}" for s in curve) + " |",
        "|---|" + "---|" * len(curve),
        "| RSS MiB | " + " | ".join(f"{s[1] / 1024:.0f}" for s in curve) + " |",
        "| fds | " + " | ".join(str(s[2]) for s in curve) + " |",
        "| events published | " + " | ".join(f"{s[4]:,}" for s in curve) + " |",
    ]
    with open(os.path.join(args.out, "soak.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if not stats.failures else 1


if __name__ == "__main__":
    sys.exit(main())
