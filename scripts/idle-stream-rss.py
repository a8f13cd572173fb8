#!/usr/bin/env python3
"""Measures a MicroSSE server's memory per idle stream and CPU per heartbeat tick.

Starts `BINARY serve` on a free port, opens N idle streams from this process (raw sockets, never
read: heartbeats pile up in the kernel's buffers, not in the server), and samples the server's
VmRSS and CPU time (/proc). Prints RSS per stream just after the streams are open and after
`--idle` seconds, and, with --heartbeat, the server CPU per tick.

  scripts/idle-stream-rss.py .build/release/microsse --streams 2000 --idle 3
  scripts/idle-stream-rss.py .build/release/microsse --streams 5000 --heartbeat 1 --idle 10
  scripts/idle-stream-rss.py .build/release/microsse --streams 10000 --heartbeat 15 --settle 5 --idle 45
  scripts/idle-stream-rss.py .build/release/microsse --streams 5000 --cookie 4096   (a browser's cookies)

The open-file limit is raised to its hard limit (the server inherits it); 10,000 streams need
about 10,100 descriptors on each side. With --perf FILE, `perf record -g` samples the server
over the idle window into FILE.
"""
import argparse
import socket
import subprocess
import sys
import time

from hubproc import cpu_seconds, raise_open_files, rss_kib, start_hub


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--streams", type=int, default=2000)
    p.add_argument("--idle", type=float, default=3.0)
    p.add_argument("--heartbeat", type=int, default=0)
    p.add_argument("--settle", type=float, default=0.0, help="seconds to wait before the CPU window")
    p.add_argument("--extra", default="", help="more serve arguments, space-separated")
    p.add_argument("--perf", default="", help="record the idle window with perf into this file")
    p.add_argument("--cookie", type=int, default=0, help="send a Cookie header of this many bytes, as a browser does")
    a = p.parse_args()
    raise_open_files(a.streams + 200)
    server, port = start_hub(a.binary, "--heartbeat", str(a.heartbeat), *a.extra.split())
    try:
        time.sleep(0.2)
        base = rss_kib(server.pid)
        cookie = f"Cookie: session={'c' * max(0, a.cookie - 8)}\r\n" if a.cookie else ""
        request = (f"GET /events/idle HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                   f"{cookie}\r\n").encode()
        socks = []
        for _ in range(a.streams):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(request)
            socks.append(s)
        for s in socks:  # the response head: the stream is open (and soon suspended)
            s.settimeout(5)
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                sys.exit("a stream was refused")
        time.sleep(0.3)
        opened = rss_kib(server.pid)
        time.sleep(a.settle)
        recorder = None
        if a.perf:
            recorder = subprocess.Popen(
                ["perf", "record", "-q", "-g", "-e", "cpu-clock", "-o", a.perf, "-p", str(server.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        time.sleep(a.idle)
        cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
        if recorder is not None:
            recorder.send_signal(2)
            recorder.wait()
        idle = rss_kib(server.pid)
        n = a.streams
        print(f"{n} streams, base RSS {base} KiB")
        print(f"just open: {(opened - base) * 1024 / n / 1000:.1f} KB per stream")
        print(f"after {a.settle + a.idle:g} s idle: {(idle - base) * 1024 / n / 1000:.1f} KB per stream"
              f" ({(idle - base) * 1024 // n:,} bytes)")
        user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        cpu = user + system
        print(
            f"server CPU over {t1 - t0:.1f} s idle: {cpu:.2f} s ({100 * cpu / (t1 - t0):.2f}% of a core;"
            f" user {user:.2f} s, system {system:.2f} s)"
        )
        if a.heartbeat:
            ticks = (t1 - t0) / a.heartbeat
            print(f"per tick ({n} streams): {1000 * cpu / ticks:.1f} ms; per stream per tick: {1e6 * cpu / ticks / n:.1f} us")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
