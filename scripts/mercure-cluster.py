#!/usr/bin/env python3
"""Mercure over Redis, measured: two hubs on one redis-server, subscribers on hub B, updates
published to hub A (draft-07 form, one publisher connection, keep-alive).

Prints deliveries per second on B and the publish-to-delivery latency (p50, p99) of updates
crossing the cluster; with `channel`, the same through `/events/T` (publish on A, subscribers on
B) for comparison. Usage:

    python3 scripts/mercure-cluster.py .build/release/microsse [subscribers] [updates] [channel]
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hubproc import free_port, start_hub  # noqa: E402

SECRET = "mercure-cluster-measurement-secret-0123456789"


def token():
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256"}).encode())
    grants = {"publish": ["*"], "subscribe": ["*"]}
    body = b64(json.dumps({"mercure": grants, "microsse": grants}).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def main():
    binary = sys.argv[1]
    subscribers = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    updates = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    channel = len(sys.argv) > 4 and sys.argv[4] == "channel"
    stream_path = b"/events/T" if channel else b"/.well-known/mercure?topic=T"
    redis_port = free_port()
    workdir = tempfile.mkdtemp()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    args = ["--jwt-secret", SECRET, "--mercure", "--mercure-legacy", "--redis", f"redis://127.0.0.1:{redis_port}",
            "--max-clients", str(subscribers + 100), "--heartbeat", "0"]
    hub_a, port_a = start_hub(binary, *args)
    hub_b, port_b = start_hub(binary, *args)
    auth = token()
    try:
        sel = selectors.DefaultSelector()
        socks = []
        for _ in range(subscribers):
            s = socket.create_connection(("127.0.0.1", port_b))
            s.sendall(b"GET " + stream_path + b" HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                      + b"Authorization: Bearer " + auth.encode() + b"\r\n\r\n")
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
        time.sleep(1.0)
        for s in socks:  # the response heads
            try:
                s.recv(65536)
            except BlockingIOError:
                pass
        publisher = http.client.HTTPConnection("127.0.0.1", port_a)
        sent = {}
        received = {}
        delivered = 0
        start = time.monotonic()
        for i in range(updates):
            t = time.monotonic()
            if channel:
                publisher.request("POST", f"/events/T?id=u{i}", body=f"u{i}", headers={"Authorization": "Bearer " + auth})
            else:
                publisher.request("POST", "/.well-known/mercure", body=f"topic=T&data=u{i}&id=u{i}", headers={
                    "Content-Type": "application/x-www-form-urlencoded", "Authorization": "Bearer " + auth})
            r = publisher.getresponse()
            r.read()
            assert r.status in (200, 202), r.status
            sent[f"u{i}"] = t
            for key, _ in sel.select(timeout=0):
                chunk = key.fileobj.recv(1 << 20)
                for line in chunk.split(b"\n"):
                    if line.startswith(b"id: "):
                        delivered += 1
                        ident = line[4:].decode()
                        received.setdefault(ident, time.monotonic())
        deadline = time.monotonic() + 60
        while delivered < subscribers * updates and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                chunk = key.fileobj.recv(1 << 20)
                for line in chunk.split(b"\n"):
                    if line.startswith(b"id: "):
                        delivered += 1
                        received.setdefault(line[4:].decode(), time.monotonic())
        elapsed = time.monotonic() - start
        latencies = sorted((received[k] - sent[k]) * 1000 for k in sent if k in received)
        p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
        what = "/events/T" if channel else "/.well-known/mercure?topic=T"
        print(f"{subscribers} subscribers of {what} on hub B, {updates} updates published to hub A")
        print(f"delivered {delivered} of {subscribers * updates} in {elapsed:.2f} s: "
              f"{delivered / elapsed:,.0f} deliveries/s, {updates / elapsed:,.0f} updates/s")
        print(f"first delivery after the publish was sent: p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms")
    finally:
        for proc in (hub_a, hub_b, redis):
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
