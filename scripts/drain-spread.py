#!/usr/bin/env python3
"""Measures how browsers reconnect after a hub restart, with and without --drain-window.

Starts `microsse serve` on a loopback port, opens N streams as EventSource-like clients over raw
sockets, sends the hub SIGTERM, restarts it on the same port as soon as the old process has
exited (as systemd's Restart= would), and records for every client the time from SIGTERM to the
`200` of its reconnect. The clients behave as a browser's EventSource does: they remember the
last `id:` and the last `retry:`; when the stream ends (or a reconnect is refused) they wait the
last retry value (3,000 ms when the hub sent none, Chromium's default) and reconnect with
`Last-Event-ID`.

Runs the measurement twice: with the drain window (default 5 s) and with `--drain-window 0`.

    scripts/drain-spread.py                       # 2,000 streams, window 5 s, then window 0
    scripts/drain-spread.py --streams 500 --window 2 --binary .build/debug/microsse

Uses .build/release/microsse if present, else .build/debug/microsse (built with `swift build`
when missing). Loopback only; every run is bounded (--timeout) and kills the hubs it started.
"""

import argparse
import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROWSER_DEFAULT_RETRY_MS = 3000  # Chromium's EventSource default reconnection time
CHANNEL = "drain"


def find_binary(explicit):
    if explicit:
        return explicit
    for kind in ("release", "debug"):
        path = os.path.join(ROOT, ".build", kind, "microsse")
        if os.access(path, os.X_OK):
            return path
    print("no .build/{release,debug}/microsse: running `swift build`", file=sys.stderr)
    subprocess.run(["swift", "build", "--product", "microsse"], cwd=ROOT, check=True)
    return os.path.join(ROOT, ".build", "debug", "microsse")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_file_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        sys.exit(f"RLIMIT_NOFILE is {soft}, need {need}: lower --streams or raise the hard limit")


class Client:
    """One EventSource: connection state, last event id, reconnection time."""

    def __init__(self, index):
        self.index = index
        self.last_id = None
        self.retry_ms = BROWSER_DEFAULT_RETRY_MS
        self.opened = asyncio.Event()  # first stream's 200 and the probe event seen
        self.reconnected_at = None  # monotonic time of the reconnect's 200
        self.attempted_at = None  # monotonic time the last reconnect attempt began
        self.refused = 0  # reconnect attempts that found no hub
        self.failure = None


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def body_chunks(reader, chunked):
    """Yields the body's bytes until the final chunk (chunked) or EOF."""
    if not chunked:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            yield data
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


def parse_fields(client, buffer):
    """Consumes the complete lines of `buffer` (SSE fields: id and retry); returns the rest."""
    while True:
        cut = min((i for i in (buffer.find(b"\n"), buffer.find(b"\r")) if i >= 0), default=-1)
        if cut < 0:
            return buffer
        line, buffer = buffer[:cut], buffer[cut + 1 :]
        if line.startswith(b"id:"):
            client.last_id = line[3:].lstrip(b" ").decode()
        elif line.startswith(b"retry:"):
            value = line[6:].lstrip(b" ")
            if value.isdigit():
                client.retry_ms = int(value)


async def open_stream(port, client):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET /events/{CHANNEL} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
    )
    if client.last_id is not None:
        request += f"Last-Event-ID: {client.last_id}\r\n"
    writer.write((request + "\r\n").encode())
    await writer.drain()
    status, headers = await read_head(reader)
    return reader, writer, status, headers


async def run_client(port, client, state):
    """The first stream, read to its end; then reconnect as a browser does, until a 200."""
    try:
        reader, writer, status, headers = await open_stream(port, client)
        if status != 200:
            client.failure = f"first stream: {status}"
            client.opened.set()
            return
        chunked = "chunked" in headers.get("transfer-encoding", "")
        buffer = b""
        async for data in body_chunks(reader, chunked):
            buffer = parse_fields(client, buffer + data)
            if client.last_id is not None:
                client.opened.set()
        writer.close()
    except (OSError, asyncio.IncompleteReadError, ValueError):
        pass  # the stream ended: a browser reconnects whichever way it ended
    if not client.opened.is_set():
        client.failure = "stream ended before the first event"
        client.opened.set()
        return
    if state["sigterm_at"] is None:
        client.failure = "stream ended before SIGTERM"
        return
    # A browser waits its reconnection time, then reconnects; a refused connection is a network
    # error, after which it waits again and retries.
    while True:
        await asyncio.sleep(client.retry_ms / 1000)
        client.attempted_at = time.monotonic()
        try:
            reader, writer, status, _ = await open_stream(port, client)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            client.refused += 1
            continue
        if status == 200:
            client.reconnected_at = time.monotonic()
        else:
            client.failure = f"reconnect: {status}"
        writer.close()
        return


async def http_request(port, method, target, body=b""):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    return int(data.split(b" ", 2)[1])


async def wait_listening(port, deadline, interval=0.05):
    while time.monotonic() < deadline:
        try:
            if await http_request(port, "GET", "/healthz") == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(interval)
    raise RuntimeError(f"the hub did not listen on {port}")


def start_hub(binary, port, window, log):
    return subprocess.Popen(
        [binary, "serve", "--port", str(port), "--drain-window", str(window), "--max-clients", "20000"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )


async def measure(binary, streams, window, timeout, log):
    port = free_port()
    state = {"sigterm_at": None}
    hubs = []
    deadline = time.monotonic() + timeout
    try:
        hubs.append(start_hub(binary, port, window, log))
        await wait_listening(port, time.monotonic() + 20)
        clients = [Client(i) for i in range(streams)]
        tasks = []
        for start in range(0, streams, 200):  # open in batches: the listen backlog stays short
            batch = clients[start : start + 200]
            tasks += [asyncio.ensure_future(run_client(port, c, state)) for c in batch]
            await asyncio.sleep(0.05)
        # One event gives every stream an id to resume from, and proves it open.
        await asyncio.sleep(0.5)
        if await http_request(port, "POST", f"/events/{CHANNEL}", b"before the restart") != 202:
            raise RuntimeError("publish failed")
        await asyncio.wait_for(
            asyncio.gather(*(c.opened.wait() for c in clients)), max(1, deadline - time.monotonic())
        )
        failed = [c for c in clients if c.failure]
        if failed:
            raise RuntimeError(f"{len(failed)} streams did not open: {failed[0].failure}")

        old = hubs[0]
        state["sigterm_at"] = sigterm_at = time.monotonic()
        old.send_signal(signal.SIGTERM)
        while old.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the old hub did not exit")
            await asyncio.sleep(0.002)
        exited = time.monotonic() - sigterm_at
        hubs.append(start_hub(binary, port, window, log))  # at once, on the same port
        restarted = time.monotonic() - sigterm_at
        try:
            await wait_listening(port, deadline, interval=0.01)
            listening = (time.monotonic() - sigterm_at) * 1000
        except RuntimeError:
            listening = float("nan")
        await asyncio.wait(tasks, timeout=max(0.1, deadline - time.monotonic()))
        for t in tasks:
            t.cancel()
        times = sorted(
            (c.reconnected_at - sigterm_at) * 1000 for c in clients if c.reconnected_at is not None
        )
        waits = sorted(
            (c.reconnected_at - c.attempted_at) * 1000 for c in clients if c.reconnected_at is not None
        )
        return {
            "waits": waits,
            "streams": streams,
            "window": window,
            "exit_ms": exited * 1000,
            "restart_ms": restarted * 1000,
            "listening_ms": listening,
            "code": old.returncode,
            "times": times,
            "refused": sum(c.refused for c in clients),
            "failures": [c.failure for c in clients if c.failure],
        }
    finally:
        for hub in hubs:
            if hub.poll() is None:
                hub.kill()
            hub.wait()


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


def report(r, bucket_ms):
    t = r["times"]
    window = f"{r['window']} s" if r["window"] else "0 (browsers use their default 3,000 ms)"
    print(f"streams:              {r['streams']}")
    print(f"drain window:         {window}")
    print(f"old hub exited:       {r['exit_ms']:.0f} ms after SIGTERM (exit code {r['code']}); "
          f"new hub started at {r['restart_ms']:.0f} ms, "
          f"listening at {r['listening_ms']:.0f} ms")
    print(f"reconnects completed: {len(t)} of {r['streams']}"
          f" ({r['refused']} attempts refused before the new hub listened)")
    if r["failures"]:
        print(f"failures:             {len(r['failures'])}, e.g. {r['failures'][0]}")
    if not t:
        return
    print("reconnect time after SIGTERM (ms): "
          + "  ".join(f"{name} {percentile(t, p):.0f}" for name, p in
                      (("min", 0), ("p10", 10), ("p50", 50), ("p90", 90), ("max", 100))))
    w = r["waits"]
    print(f"connect to 200 of the successful attempt (ms): p50 {percentile(w, 50):.0f}  "
          f"p90 {percentile(w, 90):.0f}  max {percentile(w, 100):.0f}")
    counts = {}
    for v in t:
        counts[int(v // bucket_ms)] = counts.get(int(v // bucket_ms), 0) + 1
    peak = max(counts.values())
    for b in range(0, max(counts) + 1):
        n = counts.get(b, 0)
        bar = "#" * (round(50 * n / peak) if n else 0)
        print(f"  {b * bucket_ms:>6}-{(b + 1) * bucket_ms:<6} ms {n:>6}  {bar}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=2000, help="streams to open (default 2000)")
    ap.add_argument("--window", type=int, default=5, help="--drain-window in seconds (default 5)")
    ap.add_argument("--timeout", type=float, default=60, help="bound on each run in seconds (default 60)")
    ap.add_argument("--binary", help="the microsse executable (default: .build/release, else .build/debug)")
    ap.add_argument("--bucket-ms", type=int, default=500, help="histogram bucket (default 500 ms)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the --drain-window 0 run")
    args = ap.parse_args()
    raise_file_limit(args.streams + 256)
    binary = find_binary(args.binary)
    print(f"hub: {binary}")
    runs = [args.window] + ([] if args.no_baseline or args.window == 0 else [0])
    with open(os.devnull, "w") as log:
        for i, window in enumerate(runs):
            if i:
                print()
            r = asyncio.run(measure(binary, args.streams, window, args.timeout, log))
            report(r, args.bucket_ms)


if __name__ == "__main__":
    main()
