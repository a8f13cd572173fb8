#!/usr/bin/env python3
"""Measures what slow resuming streams cost a MicroSSE server (issue: replay through cursors).

Starts `BINARY serve` on a free port, publishes EVENTS one-byte events to each of CHANNELS
channels, then opens STREAMS connections from this process, each naming every channel with the
first event's id as Last-Event-ID and never reading (a small receive buffer: a slow reader).
Prints the server's RSS per stream (VmRSS, /proc) after the samples and again 3 s after the
replays are written, the kernel's TCP memory (/proc/net/sockstat) and how long GET /stats takes
while the replays run.

  scripts/resume-memory.py .build/release/microsse                       (600 x 32 x 1,000)
  scripts/resume-memory.py .build/release/microsse --streams 100 --events 200
  scripts/resume-memory.py .build/release/microsse --redis redis://127.0.0.1:6379   (hub on Redis)
"""
import argparse
import http.client
import json
import socket
import statistics
import sys
import time

from hubproc import raise_open_files, rss_kib, start_hub, tcp_mem_kib


def stats_ms(port):
    started = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/stats")
    body = c.getresponse().read()
    c.close()
    return (time.monotonic() - started) * 1000, json.loads(body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--streams", type=int, default=600)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--samples", type=int, default=20, help="GET /stats this many times while the replays run")
    p.add_argument("--redis", metavar="URL", help="run the hub on this Redis (best an empty one)")
    a = p.parse_args()
    raise_open_files(a.streams + 100)
    redis = ["--redis", a.redis] if a.redis else []
    server, port = start_hub(a.binary, "--heartbeat", "0", *redis)
    try:
        channels = [f"c{i}" for i in range(a.channels)]
        publisher = http.client.HTTPConnection("127.0.0.1", port)
        first = None
        for _ in range(a.events):
            for c in channels:
                publisher.request("POST", f"/events/{c}", body=b"x")
                reply = publisher.getresponse()
                body = reply.read()
                if reply.status != 202:
                    sys.exit(f"publish answered {reply.status}: {body!r}")
                if first is None:
                    first = json.loads(body)["id"]
        publisher.close()
        time.sleep(0.3)
        base = rss_kib(server.pid)
        tcp_base = tcp_mem_kib()
        query = "&".join(f"channel={c}" for c in channels)
        request = (f"GET /events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   f"Accept: text/event-stream\r\nLast-Event-ID: {first}\r\n\r\n").encode()
        socks = []
        for _ in range(a.streams):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(request)
            socks.append(s)
        for s in socks:
            s.settimeout(10)
            if not s.recv(256).startswith(b"HTTP/1.1 200"):
                sys.exit("a stream was refused")
        times = []
        delivered = []
        for _ in range(a.samples):
            ms, st = stats_ms(port)
            times.append(ms)
            delivered.append(st.get("delivered", 0))
            time.sleep(0.1)
        opened = rss_kib(server.pid)
        tcp = tcp_mem_kib()
        n = a.streams
        total = n * a.channels * a.events
        # Then until the replays are written (delivered stops growing) and two release passes
        # (once a second) have given idle streams' pages back.
        done, last, still = delivered[-1], -1, time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and time.monotonic() - still < 1.0:
            if done != last:
                last, still = done, time.monotonic()
            time.sleep(0.1)
            done = stats_ms(port)[1].get("delivered", 0)
        time.sleep(3)
        settled = rss_kib(server.pid)
        print(f"{n} streams x {a.channels} channels x {a.events} events; base RSS {base} KiB")
        print(f"hub RSS: +{(opened - base) / 1024:.1f} MiB, {(opened - base) * 1024 / n / 1000:.1f} KB per stream")
        print(f"hub RSS 3 s after the replays were written: +{(settled - base) / 1024:.1f} MiB,"
              f" {(settled - base) * 1024 / n / 1000:.1f} KB per stream ({done:,} events delivered)")
        print(f"kernel TCP memory: +{(tcp - tcp_base) / 1024:.1f} MiB")
        print(f"GET /stats while replaying: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms"
              f" ({len(times)} samples)")
        print(f"events delivered meanwhile: {delivered[0]:,} -> {delivered[-1]:,} of {total:,} replayed")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
