#!/usr/bin/env python3
"""Measures how well `--history-memory` bounds a MicroSSE hub's memory.

Starts `BINARY serve --history-memory BUDGET` on a free port (other settings at their defaults),
then over one keep-alive HTTP connection (requests pipelined in windows):

  phase 1: TINY one-byte publishes, each to a new channel (c0, c1, ...);
  phase 2: BIG publishes of MIB MiB each, to channels big0, big1, ...

and prints, after each phase, the server's VmRSS growth over its RSS just after start, the
channels it keeps (/stats), and the growth against the budget.

  scripts/history-memory-rss.py .build/release/microsse
  scripts/history-memory-rss.py .build/debug/microsse --tiny 100000 --big 100

Exits 1 when a phase's growth is over BUDGET + SLACK MiB (the issue's target: 32).
"""
import argparse
import json
import socket
import sys
import time

from hubproc import cpu_seconds, rss_kib, start_hub


class Connection:
    """One keep-alive HTTP/1.1 connection with pipelined requests."""

    def __init__(self, port):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, method, path, body=b""):
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        return head + body

    def response(self):
        """Reads one response; returns (status, body)."""
        while b"\r\n\r\n" not in self.buffer:
            self.fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(self.buffer) < length:
            self.fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        self.buffer += chunk

    def publish_all(self, requests, window):
        """Sends the requests `window` at a time; every answer must be 202."""
        for start in range(0, len(requests), window):
            batch = requests[start:start + window]
            self.sock.sendall(b"".join(batch))
            for _ in batch:
                status, body = self.response()
                if status != 202:
                    raise RuntimeError(f"publish answered {status}: {body[:200]!r}")

    def stats(self):
        self.sock.sendall(self.request("GET", "/stats"))
        status, body = self.response()
        return json.loads(body) if status == 200 else {}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--budget", type=int, default=64, help="--history-memory in MiB (default 64)")
    p.add_argument("--tiny", type=int, default=300_000, help="one-byte publishes to new channels")
    p.add_argument("--big", type=int, default=200, help="big publishes")
    p.add_argument("--mib", type=float, default=1.0, help="MiB per big publish")
    p.add_argument("--window", type=int, default=32, help="requests pipelined at once")
    p.add_argument("--slack", type=int, default=32, help="MiB allowed over the budget")
    p.add_argument("--extra", default="", help="more serve arguments, space-separated")
    a = p.parse_args()
    budget = a.budget << 20
    server, port = start_hub(a.binary, "--history-memory", str(budget), *a.extra.split())
    failed = False
    try:
        conn = Connection(port)
        conn.stats()
        base = rss_kib(server.pid)
        print(f"server {a.binary}, --history-memory {budget} ({a.budget} MiB); RSS at start {base / 1024:.1f} MiB")

        def report(phase, started, cpu):
            nonlocal failed
            time.sleep(0.5)  # let a trim that follows the last publish finish
            stats = conn.stats()
            grown = (rss_kib(server.pid) - base) / 1024
            over = grown - a.budget
            ok = grown <= a.budget + a.slack
            failed = failed or not ok
            print(f"{phase}: {time.monotonic() - started:.1f} s (server CPU {sum(cpu_seconds(server.pid)) - cpu:.1f} s), channels {stats.get('channels')}, "
                  f"RSS growth {grown:.1f} MiB ({over:+.1f} MiB against the budget; "
                  f"{'within' if ok else 'OVER'} budget + {a.slack} MiB)")

        started, cpu = time.monotonic(), sum(cpu_seconds(server.pid))
        tiny = [conn.request("POST", f"/events/c{i}", b"x") for i in range(a.tiny)]
        conn.publish_all(tiny, a.window)
        del tiny
        report(f"phase 1: {a.tiny} one-byte publishes to new channels", started, cpu)

        started, cpu = time.monotonic(), sum(cpu_seconds(server.pid))
        payload = b"y" * int(a.mib * (1 << 20))
        for i in range(a.big):
            conn.publish_all([conn.request("POST", f"/events/big{i}", payload)], 1)
        report(f"phase 2: then {a.big} publishes of {a.mib:g} MiB", started, cpu)
    finally:
        server.terminate()
        server.wait()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
