#!/usr/bin/env python3
"""Redis CPU per publish per shard: one hub on 1, 2, ... redis-servers (`--redis` repeated), a
uniform publish load over many channels, and each server's `INFO cpu` (its whole CPU: commands,
event loop, network) and `INFO commandstats` (the publish script and the hub's reader) divided
by the publishes of the whole run.

    python3 scripts/shard-cpu.py .build/release/microsse [--shards 1,2] [--rounds 3]

The hub runs on CPU 0, the redis-servers and the publishers (Python threads with keep-alive
connections, 64-byte events to channels ch0...chN round robin) on CPU 1. On a machine with
other load the figures move; compare rounds taken side by side.
"""
import argparse
import http.client
import os
import subprocess
import tempfile
import threading
import time

from hubproc import free_port, start_hub


def redis_info(port, section):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", section], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if ":" in line]


def commandstats(port):
    """{command: (calls, usec)} since the last CONFIG RESETSTAT."""
    rows = {}
    for line in redis_info(port, "commandstats"):
        if line.startswith("cmdstat_"):
            name, rest = line.split(":", 1)
            kv = dict(x.split("=") for x in rest.split(","))
            rows[name[len("cmdstat_"):]] = (int(kv["calls"]), int(kv["usec"]))
    return rows


def cpu_seconds(port):
    kv = dict(line.split(":", 1) for line in redis_info(port, "cpu"))
    return float(kv["used_cpu_user"]) + float(kv["used_cpu_sys"])


def run(binary, shards, channels, conns, seconds):
    directory = tempfile.mkdtemp()
    servers = []
    for _ in range(shards):
        port = free_port()
        p = subprocess.Popen(["taskset", "-c", "1", "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", directory], stdout=subprocess.DEVNULL)
        servers.append((port, p))
    for port, _ in servers:
        while subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True).returncode != 0:
            time.sleep(0.05)
    hub, hub_port = start_hub(binary, *[a for port, _ in servers for a in ("--redis", f"redis://127.0.0.1:{port}")])
    subprocess.run(["taskset", "-a", "-p", "-c", "0", str(hub.pid)], stdout=subprocess.DEVNULL)
    os.sched_setaffinity(0, {1})
    try:
        for port, _ in servers:
            subprocess.run(["redis-cli", "-p", str(port), "CONFIG", "RESETSTAT"], stdout=subprocess.DEVNULL)
        cpu_before = [cpu_seconds(port) for port, _ in servers]
        counts = [0] * conns
        stop = time.monotonic() + seconds
        body = b"x" * 64

        def publisher(k):
            c = http.client.HTTPConnection("127.0.0.1", hub_port)
            i = k
            while time.monotonic() < stop:
                c.request("POST", f"/events/ch{i % channels}", body)
                r = c.getresponse()
                r.read()
                counts[k] += r.status == 202
                i += conns

        threads = [threading.Thread(target=publisher, args=(k,)) for k in range(conns)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        n = max(1, sum(counts))
        print(f"{shards} shard(s), {channels} channels: {n} publishes acknowledged, {n / elapsed:,.0f}/s")
        for k, (port, _) in enumerate(servers):
            rows = commandstats(port)
            # Commands a script runs are counted on their own too, and inside EVALSHA's time:
            # only the commands the hub sends (the script, the reader's XREAD) are added up.
            top = {name: rows.get(name, (0, 0)) for name in ("evalsha", "xread")}
            usec = sum(u for _, u in top.values())
            cpu = cpu_seconds(port) - cpu_before[k]
            detail = ", ".join(f"{name} {calls} × {u / max(1, calls):.1f} µs" for name, (calls, u) in top.items())
            print(f"  shard {k}: {cpu * 1e6 / n:.1f} µs of CPU per publish of the whole load (INFO cpu), "
                  f"{usec / n:.1f} µs in commands (commandstats: {detail})")
    finally:
        hub.kill()
        hub.wait()
        for _, p in servers:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("--shards", default="1,2", help="shard counts to compare, e.g. 1,2,3")
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    for _ in range(a.rounds):
        for shards in (int(s) for s in a.shards.split(",")):
            run(a.binary, shards, a.channels, a.conns, a.seconds)


main()
