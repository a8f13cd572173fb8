#!/usr/bin/env python3
"""MicroSSE benchmark runner (python3, stdlib only).

For every scenario and every server under test: start the server pinned to CPU 0
(`taskset -c 0`), wait for GET /healthz, run the load generator pinned to CPU 1, read its one
JSON line (it samples the server's /proc/PID/stat and /proc/PID/status at the phase edges),
stop the server with SIGINT and check it exits 0. Then write a markdown report: docs/BENCHMARKS.md at
the repository root for the full suite, Benchmarks/results/smoke.md for --smoke. Raw results go
to Benchmarks/results/*.json, server logs to Benchmarks/results/logs/.

Servers: microsse (MICROSSE_CMD or --microsse-cmd; default `../.build/release/microsse serve`
at its shipped defaults, skipped with a note if missing), c-ref (reference/c-hub at its own,
libmicrohttpd's, defaults) and node (reference/node-hub).
The references run as their own users would run them, never tuned to match MicroSSE.
All traffic goes to 127.0.0.1.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import redis_publish
import mercure_bench

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LOADGEN = os.path.join(HERE, "loadgen", "loadgen")
CHUB = os.path.join(HERE, "reference", "c-hub", "c-hub")
NODEHUB = os.path.join(HERE, "reference", "node-hub", "hub.js")
RESULTS = os.path.join(HERE, "results")

INPROC_SWIFT = os.path.join(HERE, "inproc", "inproc-swift")
INPROC_C = os.path.join(HERE, "inproc", "inproc-c")

# MicroSSE at its shipped defaults (heartbeats every 15 s, publishing on, 10,000 streams): only
# the address is given. Every reference runs at its own defaults too (the C hub: libmicrohttpd's
# 32 KiB connection memory, block 1024; see reference/c-hub/hub.c); CREF_ARGS / --cref-args add
# flags to it for experiments outside `make bench`.
DEFAULT_MICROSSE = "../.build/release/microsse serve --host 127.0.0.1 --port {port}"

SERVER_CPU, LOADGEN_CPU = "0", "1"

# The idle scenario of the full suite measures one heartbeat interval of the steady state. MicroSSE's
# heartbeat timer ticks every 15 s and gives a comment to each stream that had nothing since the
# previous tick: the first tick after a stream opens writes it none, every later one writes it one.
# So the loadgen settles 16 s after the last stream is established (past every stream's first tick,
# and past the second in which an idle stream gives its unused pages back), then measures a 15 s
# window: it holds exactly one tick, which writes a heartbeat to every stream, as every 15 s of an
# idle server's life.
IDLE_SETTLE_S = 16
IDLE_HOLD_S = 15

# The shard scenarios publish to 16 channels (spread over the shards by their names' hash) and
# subscribe to all of them: publisher connection c posts to bench-(c mod 16), keeping its order.
SIXTEEN_CHANNELS = ["--pub-channels", "16", "--sub-path",
                    "/events?" + "&".join("channel=bench-%d" % i for i in range(16))]

# name → (title, loadgen arguments)
SCENARIOS = {
    "full": {
        "fanout": ("fan-out: 1,000 subscribers, 64-byte events, as fast as possible",
                   ["--subs", "1000", "--size", "64", "--events", "100000000", "--pub-conns", "16",
                    "--window", "128", "--duration", "8", "--drain", "10"]),
        "latency": ("latency: 1,000 subscribers, 100 events/s for 10 s",
                    ["--subs", "1000", "--size", "64", "--events", "1000", "--rate", "100", "--pub-conns", "4",
                     "--duration", "12", "--drain", "10"]),
        "idle": ("idle: 10,000 subscribers, one 15 s heartbeat interval measured after %d s settled" % IDLE_SETTLE_S,
                 ["--subs", "10000", "--settle", str(IDLE_SETTLE_S), "--hold", str(IDLE_HOLD_S),
                  "--connect-timeout", "60", "--connect-conc", "256"]),
        "large": ("large payloads: 100 subscribers, 16 KiB events, as fast as possible",
                  ["--subs", "100", "--size", "16384", "--events", "100000000", "--pub-conns", "4",
                   "--window", "32", "--duration", "8", "--drain", "10"]),
        "dashboard": ("dashboard: 10,000 subscribers, 10 events/s for 10 s",
                      ["--subs", "10000", "--size", "64", "--events", "100", "--rate", "10", "--pub-conns", "2",
                       "--duration", "12", "--drain", "20", "--connect-timeout", "60", "--connect-conc", "256"]),
        "inproc": ("in-process publishing: 1,000 subscribers, 20,000 64-byte events through the Swift API "
                   "and the C API, window 128",
                   ["--subs", "1000", "--pub-conns", "0", "--expect", "20000", "--drain", "60"]),
        "redis-fanout": ("two hubs over Redis, fan-out: publish on hub A, 1,000 subscribers on hub B, "
                         "64-byte events as fast as possible",
                         ["--subs", "1000", "--size", "64", "--events", "100000000", "--pub-conns", "16",
                          "--window", "128", "--duration", "8", "--drain", "10"]),
        "redis-latency": ("two hubs over Redis, latency: publish on hub A, 1,000 subscribers on hub B, "
                          "100 events/s for 10 s",
                          ["--subs", "1000", "--size", "64", "--events", "1000", "--rate", "100", "--pub-conns",
                           "4", "--duration", "12", "--drain", "10"]),
        "scale-fanout": ("scale-out, fan-out: 1, 2 and 3 hubs on one Redis, 1,000 subscribers spread evenly, "
                         "publishing on hub 1, 64-byte events as fast as possible",
                         ["--subs", "1000", "--size", "64", "--events", "100000000", "--pub-conns", "16",
                          "--window", "128", "--duration", "6", "--drain", "10"]),
        "scale-latency": ("scale-out, latency: 1, 2 and 3 hubs on one Redis, 1,000 subscribers spread evenly, "
                          "100 events/s on hub 1 for 6 s",
                          ["--subs", "1000", "--size", "64", "--events", "600", "--rate", "100", "--pub-conns", "4",
                           "--duration", "8", "--drain", "10"]),
        "resume-storm": ("resume storm: 5,000 streams on one hub (with Redis) reconnect at once with Last-Event-ID "
                         "while 10 events/s flow; 500 steady streams watched",
                         ["--subs", "5500", "--storm-subs", "5000", "--hold", "2", "--storm-at", "5", "--size", "64",
                          "--events", "150", "--rate", "10", "--pub-conns", "2", "--duration", "16", "--drain", "30",
                          "--connect-timeout", "60", "--connect-conc", "256"]),
        "redis-publish": ("publishing through Redis: one hub alone, on 1 Redis, on 2 and 3 shards; 10 subscribers "
                          "of 16 channels, 32 keep-alive publish connections (connection c posts to channel c mod 16), "
                          "64-byte events as fast as acknowledged, 8 s",
                          ["--subs", "10", "--size", "64", "--events", "100000000", "--pub-conns", "32",
                           "--duration", "8", "--drain", "10"] + SIXTEEN_CHANNELS),
        "shard-fanout": ("shards, fan-out: 2 hubs on 1 Redis and on 2 shards, 1,000 subscribers of 16 channels spread "
                         "evenly, publishing on hub 1, 64-byte events as fast as possible",
                         ["--subs", "1000", "--size", "64", "--events", "100000000", "--pub-conns", "16",
                          "--window", "128", "--duration", "6", "--drain", "10"] + SIXTEEN_CHANNELS),
        "mercure-fanout": ("Mercure fan-out: 1,000 subscribers on /events/T, on /.well-known/mercure?match=T, and "
                           "each on a different URL pattern; 64-byte events as fast as possible",
                           ["--subs", "1000", "--size", "64", "--events", "100000000", "--pub-conns", "16",
                            "--window", "128", "--duration", "8", "--drain", "10"]),
    },
    "smoke": {
        "fanout": ("fan-out (smoke): 50 subscribers, 64-byte events",
                   ["--subs", "50", "--size", "64", "--events", "100000000", "--pub-conns", "8",
                    "--window", "64", "--duration", "1", "--drain", "5"]),
        "latency": ("latency (smoke): 50 subscribers, 50 events/s for 1 s",
                    ["--subs", "50", "--size", "64", "--events", "50", "--rate", "50", "--pub-conns", "2",
                     "--duration", "3", "--drain", "5"]),
        "idle": ("idle (smoke): 500 subscribers held 1 s (no heartbeat tick in so short a window)",
                 ["--subs", "500", "--hold", "1", "--connect-timeout", "20"]),
        "large": ("large payloads (smoke): 10 subscribers, 16 KiB events",
                  ["--subs", "10", "--size", "16384", "--events", "100000000", "--pub-conns", "2",
                   "--window", "16", "--duration", "1", "--drain", "5"]),
        "dashboard": ("dashboard (smoke): 500 subscribers, 10 events/s for 1 s",
                      ["--subs", "500", "--size", "64", "--events", "10", "--rate", "10", "--pub-conns", "2",
                       "--duration", "3", "--drain", "5", "--connect-timeout", "20"]),
        "inproc": ("in-process publishing (smoke): 50 subscribers, 500 events, Swift API and C API",
                   ["--subs", "50", "--pub-conns", "0", "--expect", "500", "--drain", "20"]),
        "redis-fanout": ("two hubs over Redis, fan-out (smoke): 50 subscribers on hub B",
                         ["--subs", "50", "--size", "64", "--events", "100000000", "--pub-conns", "8",
                          "--window", "64", "--duration", "1", "--drain", "5"]),
        "redis-latency": ("two hubs over Redis, latency (smoke): 50 subscribers, 50 events/s for 1 s",
                          ["--subs", "50", "--size", "64", "--events", "50", "--rate", "50", "--pub-conns", "2",
                           "--duration", "3", "--drain", "5"]),
        "scale-fanout": ("scale-out, fan-out (smoke): 1, 2 and 3 hubs on one Redis, 60 subscribers spread evenly",
                         ["--subs", "60", "--size", "64", "--events", "100000000", "--pub-conns", "8",
                          "--window", "64", "--duration", "1", "--drain", "5"]),
        "scale-latency": ("scale-out, latency (smoke): 1, 2 and 3 hubs on one Redis, 60 subscribers, 50 events/s "
                          "for 1 s",
                          ["--subs", "60", "--size", "64", "--events", "50", "--rate", "50", "--pub-conns", "2",
                           "--duration", "3", "--drain", "5"]),
        "resume-storm": ("resume storm (smoke): 500 streams on one hub (with Redis) reconnect at once, 50 steady",
                         ["--subs", "550", "--storm-subs", "500", "--hold", "0.5", "--storm-at", "1", "--size", "64",
                          "--events", "30", "--rate", "10", "--pub-conns", "2", "--duration", "4", "--drain", "10",
                          "--connect-timeout", "20"]),
        "redis-publish": ("publishing through Redis (smoke): one hub alone, on 1 Redis, on 2 and 3 shards; "
                          "5 subscribers, 8 publish connections, 1 s",
                          ["--subs", "5", "--size", "64", "--events", "100000000", "--pub-conns", "8",
                           "--duration", "1", "--drain", "5"] + SIXTEEN_CHANNELS),
        "shard-fanout": ("shards, fan-out (smoke): 2 hubs on 1 Redis and on 2 shards, 40 subscribers",
                         ["--subs", "40", "--size", "64", "--events", "100000000", "--pub-conns", "8",
                          "--window", "64", "--duration", "1", "--drain", "5"] + SIXTEEN_CHANNELS),
        "mercure-fanout": ("Mercure fan-out (smoke): 50 subscribers on /events/T, on ?match=T, each on a URL pattern",
                           ["--subs", "50", "--size", "64", "--events", "100000000", "--pub-conns", "8",
                            "--window", "64", "--duration", "1", "--drain", "5"]),
    },
}
ORDER = ["fanout", "latency", "idle", "large", "dashboard", "inproc", "redis-fanout", "redis-latency",
         "scale-fanout", "scale-latency", "resume-storm", "redis-publish", "shard-fanout", "mercure-fanout"]
SERVER_ORDER = ["microsse", "c-ref", "node"]
HEADLINE_SERVERS = ["microsse", "c-ref", "node"]
# Scenarios run in several interleaved rounds (microsse, c-ref, node, microsse, ...): the report
# keeps each server's best round by this figure. Other processes on a shared machine only ever
# slow a run down, so the best round is the closest to what the server can do, and interleaving
# gives every server the same chances.
PRIMARY = {"fanout": ("dps", max), "latency": ("p99", min), "idle": ("cpu_pct", min), "large": ("mbps", max),
           "dashboard": ("p99", min),
           "inproc": ("dps", max),
           "redis-fanout": ("dps", max), "redis-latency": ("p99", min),
           "scale-fanout": ("dps", max), "scale-latency": ("p99", min),
           "redis-publish": ("pub_per_s", max), "shard-fanout": ("dps", max),
           "mercure-fanout": ("dps", max)}
# A tail percentile is the figure most easily spoiled by one preemption: at least this many rounds.
MIN_ROUNDS = {"latency": 3}
# Scenarios that run only MicroSSE variants (their own report sections).
MICROSSE_ONLY = {"inproc": ["swift-api", "c-api"], "redis-fanout": ["two-hubs"], "redis-latency": ["two-hubs"],
                 "scale-fanout": None, "scale-latency": None, "resume-storm": ["storm"],
                 "redis-publish": None, "shard-fanout": None,
                 "mercure-fanout": mercure_bench.VARIANTS}
# The scale-out variants: (name, hubs, with Redis). Subscribers spread evenly over the hubs
# (loadgen --sub-ports), the publisher on hub 1; every hub and redis-server pinned to the server CPU.
SCALE_VARIANTS = [("1-hub", 1, False), ("1-hub-redis", 1, True), ("2-hubs", 2, True), ("3-hubs", 3, True)]
# The storm hub holds the 5,500 streams plus, for a moment, the 5,000 being replaced (a client's
# close reaches the hub after its reconnect may): room above the 10,000 default.
STORM_HUB_ARGS = ["--max-clients", "12000"]


def log(msg):
    print(msg, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def healthy(port, timeout, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                s.settimeout(1)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def have_taskset():
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(cpu, argv):
    return (["taskset", "-c", cpu] if have_taskset() else []) + argv


def server_commands(args):
    """→ list of (name, argv template or None, note)."""
    out = []
    mcmd = args.microsse_cmd or os.environ.get("MICROSSE_CMD") or DEFAULT_MICROSSE
    margv = shlex.split(mcmd)
    exe = margv[0]
    exe_path = exe if os.path.isabs(exe) else os.path.normpath(os.path.join(HERE, exe))
    if os.sep in exe and not os.path.exists(exe_path):
        out.append(("microsse", None, "skipped: %s not found (build it with `swift build -c release`)" % exe_path))
    elif os.sep not in exe and not shutil.which(exe):
        out.append(("microsse", None, "skipped: %s not on PATH" % exe))
    else:
        if os.sep in exe:
            margv[0] = exe_path
        out.append(("microsse", margv, mcmd))
    cargs = args.cref_args if args.cref_args is not None else os.environ.get("CREF_ARGS", "")
    for name, flags in (("c-ref", cargs),):
        if os.path.exists(CHUB):
            out.append((name, [CHUB, "--host", "127.0.0.1", "--port", "{port}"] + shlex.split(flags),
                        ("reference/c-hub/c-hub --port {port} " + flags).strip()))
        else:
            out.append((name, None, "skipped: %s not built (make -C Benchmarks)" % CHUB))
    if shutil.which("node"):
        out.append(("node", ["node", NODEHUB, "--host", "127.0.0.1", "--port", "{port}"],
                    "node reference/node-hub/hub.js --port {port}"))
    else:
        out.append(("node", None, "skipped: node not found"))
    wanted = args.servers.split(",")
    return [s for s in out if s[0] in wanted]


def proc_cpu_s(pid):
    """utime + stime of a process in seconds (None when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_proc(p, timeout=20):
    if p.poll() is not None:
        return "exited early (%s)" % p.returncode
    p.send_signal(signal.SIGINT)
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "hung (killed after %d s)" % timeout


def redis_ping(port, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def run_two_hubs(margv_t, scen, lg_args, logdir):
    """Hub A (publishers) and hub B (subscribers), both `microsse serve --redis` on a throwaway
    redis-server; all three pinned to the server CPU. Server CPU = hub B over the measured phase
    (loadgen) + hub A + redis over the whole loadgen run."""
    return run_cluster(margv_t, scen, lg_args, logdir, "two-hubs", ["hub-a", "hub-b"], True, pub=0, subs=[1])


def run_cluster(margv_t, scen, lg_args, logdir, variant, hub_names, with_redis, pub=0, subs=None, hub_args=()):
    """len(hub_names) MicroSSE hubs (with `--redis` on one throwaway redis-server when with_redis),
    all pinned to the server CPU; the publisher on hub `pub`, the subscribers spread evenly over
    hubs `subs` (default: all). Server CPU = the first subscriber hub over the measured phase
    (loadgen) + every other hub and redis over the whole loadgen run (extra_cpu_s)."""
    rec = {"server": variant, "scenario": scen}
    subs = list(range(len(hub_names))) if subs is None else subs
    ports = [free_port() for _ in hub_names]
    logs = []
    procs = []
    try:
        extra = []
        if with_redis:
            rport = free_port()
            rname = "redis" if variant == "two-hubs" else "%s-redis" % variant
            rlog = open(os.path.join(logdir, "%s-%s.log" % (scen, rname)), "w")
            logs.append(rlog)
            redis = subprocess.Popen(pinned(SERVER_CPU, ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                                         "--save", "", "--appendonly", "no"]),
                                     stdout=rlog, stderr=subprocess.STDOUT, cwd=HERE)
            procs.append(("redis", redis))
            if not redis_ping(rport, 10):
                rec["error"] = "redis-server did not answer PING within 10 s"
                return rec
            extra = ["--redis", "redis://127.0.0.1:%d" % rport]
        hubs = []
        for hub, port in zip(hub_names, ports):
            argv = [a.replace("{port}", str(port)) for a in margv_t] + list(hub_args) + extra
            name = hub if variant == "two-hubs" else "%s-%s" % (variant, hub)
            lf = open(os.path.join(logdir, "%s-%s.log" % (scen, name)), "w")
            logs.append(lf)
            p = subprocess.Popen(pinned(SERVER_CPU, argv), stdout=lf, stderr=subprocess.STDOUT,
                                 preexec_fn=raise_nofile, cwd=HERE)
            procs.append((hub, p))
            hubs.append(p)
            if not healthy(port, 15, p):
                rec["error"] = "%s did not answer GET /healthz within 15 s" % hub
                return rec
        measured = hub_names[subs[0]]
        cpu0 = {n: proc_cpu_s(p.pid) for n, p in procs if n != measured}
        drops0 = listen_drops()
        cmd = [LOADGEN, "--port", str(ports[subs[0]]), "--pub-port", str(ports[pub]), "--server-pid",
               str(hubs[subs[0]].pid), "--label", "%s/%s" % (scen, variant)]
        if len(subs) > 1:
            cmd += ["--sub-ports", ",".join(str(ports[i]) for i in subs)]
        try:
            p = subprocess.run(pinned(LOADGEN_CPU, cmd + lg_args), capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            rec["error"] = "loadgen timed out"
            return rec
        cpu1 = {n: proc_cpu_s(p_.pid) for n, p_ in procs if n != measured}
        drops1 = listen_drops()
        if drops0 is not None and drops1 is not None:
            rec["listen_drops"] = drops1 - drops0
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if p.returncode != 0 or not lines:
            rec["error"] = "loadgen failed (%d): %s" % (p.returncode, p.stderr.strip()[-300:])
            return rec
        rec["lg"] = json.loads(lines[-1])
        rec["extra_cpu_s"] = {n: round(cpu1[n] - cpu0[n], 3) for n in cpu0 if cpu0[n] is not None and cpu1[n] is not None}
    finally:
        rcs = {}
        for n, p in reversed(procs):
            if n == "redis":
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            else:
                rcs[n] = stop_proc(p)
        bad = {n: rc for n, rc in rcs.items() if rc != 0}
        rec["stop_rc"] = 0 if not bad else ", ".join("%s: %s" % kv for kv in bad.items())
        for lf in logs:
            lf.close()
    return rec


def listen_drops():
    """TcpExt ListenDrops from /proc/net/netstat: connection attempts the kernel dropped because a
    listen queue was full (each costs its client a SYN retransmit, 1 s later); None if unreadable."""
    try:
        with open("/proc/net/netstat") as f:
            lines = [l.split() for l in f if l.startswith("TcpExt:")]
        return int(dict(zip(lines[0][1:], lines[1][1:]))["ListenDrops"])
    except (OSError, IndexError, KeyError, ValueError):
        return None


def lg_value(lg_args, flag):
    return lg_args[lg_args.index(flag) + 1]


def run_microsse_only(scen, title, lg_args, servers, logdir):
    """Scenario 5 (in-process publishers) and the two-hub Redis scenarios."""
    m = next((s for s in servers if s[0] == "microsse"), None)
    if m is None or m[1] is None:
        log("   skipped: MicroSSE is not run")
        return []
    out = []
    if scen == "inproc":
        common = ["--port", "{port}", "--subs", lg_value(lg_args, "--subs"), "--events",
                  lg_value(lg_args, "--expect"), "--size", "64", "--window", "128"]
        for name, exe in (("swift-api", INPROC_SWIFT), ("c-api", INPROC_C)):
            if not os.path.exists(exe):
                out.append({"server": name, "scenario": scen,
                            "error": "%s not built (make -C Benchmarks inproc)" % os.path.relpath(exe, REPO)})
            else:
                out.append(run_one(name, [exe] + common, scen, title, lg_args, logdir))
    elif scen in ("redis-publish", "shard-fanout"):
        out += redis_publish.run(sys.modules[__name__], scen, lg_args, m[1], logdir)
    elif scen.startswith("mercure-"):
        out += mercure_bench.run_mercure(run_one, m[1], scen, title, lg_args, logdir)
    elif not shutil.which("redis-server"):
        out.append({"server": "two-hubs" if scen.startswith("redis-") else "redis", "scenario": scen,
                    "error": "redis-server not found"})
    elif scen.startswith("redis-"):
        out.append(run_two_hubs(m[1], scen, lg_args, logdir))
    elif scen == "resume-storm":
        out.append(run_cluster(m[1], scen, lg_args, logdir, "storm", ["hub-1"], True, hub_args=STORM_HUB_ARGS))
    else:
        for variant, n, with_redis in SCALE_VARIANTS:
            out.append(run_cluster(m[1], scen, lg_args, logdir, variant, ["hub-%d" % (i + 1) for i in range(n)],
                                   with_redis))
    return out


def run_one(name, argv_t, scen, title, lg_args, logdir):
    port = free_port()
    argv = [a.replace("{port}", str(port)) for a in argv_t]
    logpath = os.path.join(logdir, "%s-%s.log" % (scen, name))
    rec = {"server": name, "scenario": scen, "port": port}
    with open(logpath, "w") as logf:
        t0 = time.time()
        srv = subprocess.Popen(pinned(SERVER_CPU, argv), stdout=logf, stderr=subprocess.STDOUT,
                               preexec_fn=raise_nofile, cwd=HERE)
        try:
            if not healthy(port, 15, srv):
                logf.flush()
                tail = open(logpath, errors="replace").read()[-200:].strip().replace("\n", " / ").replace("|", "/")
                if srv.poll() is not None:
                    rec["error"] = "server exited with status %s before answering GET /healthz: %s" % (srv.returncode, tail)
                else:
                    rec["error"] = "server did not answer GET /healthz within 15 s (log: %s)" % os.path.relpath(logpath, REPO)
                return rec
            rec["start_s"] = round(time.time() - t0, 3)
            cmd = pinned(LOADGEN_CPU, [LOADGEN, "--port", str(port), "--server-pid", str(srv.pid),
                                       "--label", "%s/%s" % (scen, name)] + lg_args)
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
            except subprocess.TimeoutExpired:
                rec["error"] = "loadgen timed out"
                return rec
            lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
            if p.returncode != 0 or not lines:
                rec["error"] = "loadgen failed (%d): %s" % (p.returncode, p.stderr.strip()[-300:])
                return rec
            rec["lg"] = json.loads(lines[-1])
        finally:
            t1 = time.time()
            if srv.poll() is None:
                srv.send_signal(signal.SIGINT)
                try:
                    rc = srv.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
                    rc = "hung (killed after 20 s)"
            else:
                rc = "exited early (%s)" % srv.returncode
            rec["stop_rc"] = rc
            rec["stop_s"] = round(time.time() - t1, 3)
    return rec


# ----------------------------------------------------------------------------------------------
# report


def fmt(v, nd=1):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 1e6:
        return "{:,.0f}".format(v)
    if abs(v) >= 100:
        return "{:,.0f}".format(v)
    return ("{:,.%df}" % nd).format(v)


def metrics(rec):
    """Scenario figures of one run → dict name → number (None when missing)."""
    lg = rec.get("lg")
    if not lg:
        return {}
    scen = rec["scenario"]
    m = {}
    dur = lg["delivery_s"] or 0
    cpu = lg["server_cpu_s"]
    measure = lg["measure_s"] or 1
    m["cpu_pct"] = 100.0 * cpu / measure if cpu >= 0 else None
    m["loadgen_pct"] = 100.0 * lg["loadgen_cpu_s"] / measure
    if rec.get("extra_cpu_s") and cpu >= 0:
        cpu += sum(rec["extra_cpu_s"].values())
        m["cpu_pct"] = 100.0 * cpu / measure
    if scen in ("fanout", "large", "latency", "dashboard", "inproc", "redis-fanout", "redis-latency",
                "scale-fanout", "scale-latency", "resume-storm", "redis-publish", "shard-fanout",
                "mercure-fanout"):
        m["dps"] = lg["deliveries_per_s"]
        m["cpu_per_m"] = cpu / (lg["deliveries"] / 1e6) if lg["deliveries"] else None
        m["mbps"] = lg["payload_mb_per_s"]
        m["p50"] = lg["lat_p50_us"] / 1e3
        m["p90"] = lg["lat_p90_us"] / 1e3
        m["p99"] = lg["lat_p99_us"] / 1e3
        m["max"] = lg["lat_max_us"] / 1e3
        m["pub_per_s"] = lg["pub_per_s"]
        m["cpu_per_gb"] = cpu / (lg["payload_bytes"] / 1e9) if lg["payload_bytes"] else None
    if scen == "idle":
        n = lg["established"] or 1
        m["established"] = lg["established"]
        # After the hold, as a held idle stream costs (a stream gives unused buffer pages back
        # after a second suspended, so the "just connected" sample overstates it).
        m["rss_per_stream_kb"] = (lg["server_rss_kb_end"] - lg["server_rss_kb_start"]) / n
        m["idle_cpu_s"] = cpu
        m["idle_s"] = lg["measure_s"]
        m["connect_s"] = lg["connect_s"]
        m["comments_per_stream"] = lg.get("window_comments", 0) / n
    if scen == "resume-storm" and "storm_subs" in lg:
        m["storm_live_s"] = lg["storm_live_s"] if lg["storm_live_s"] >= 0 else None
        m["storm_caught_s"] = lg["storm_caught_s"] if lg["storm_caught_s"] >= 0 else None
        for ph in ("before", "during", "after", "resumed"):
            m["%s_n" % ph] = lg["storm_lat_%s_n" % ph]
            for q in ("p50", "p99", "max"):
                m["%s_%s" % (ph, q)] = lg["storm_lat_%s_%s_us" % (ph, q)] / 1e3
    m["rss_mb"] = lg["server_rss_kb_end"] / 1024.0
    m["hwm_mb"] = lg["server_hwm_kb"] / 1024.0
    del dur
    return m


ROWS = {
    "fanout": [("deliveries/s", "dps", 0, "higher"), ("server CPU-s per 1M deliveries", "cpu_per_m", 3, "lower"),
               ("server CPU use (%)", "cpu_pct", 0, None), ("events published/s", "pub_per_s", 0, "higher"),
               ("latency p50 under load (ms)", "p50", 2, "lower"), ("latency p99 under load (ms)", "p99", 2, "lower"),
               ("server RSS at end (MB)", "rss_mb", 1, "lower"), ("loadgen CPU use (%)", "loadgen_pct", 0, None)],
    "latency": [("latency p50 (ms)", "p50", 2, "lower"), ("latency p90 (ms)", "p90", 2, "lower"),
                ("latency p99 (ms)", "p99", 2, "lower"), ("latency max (ms)", "max", 2, "lower"),
                ("server CPU use (%)", "cpu_pct", 1, "lower"), ("server CPU-s per 1M deliveries", "cpu_per_m", 3, "lower")],
    "idle": [("streams established", "established", 0, "higher"), ("RSS per stream (KB)", "rss_per_stream_kb", 2, "lower"),
             ("server CPU-s while idle", "idle_cpu_s", 2, "lower"), ("server CPU while idle (% of a core)", "cpu_pct", 2, "lower"),
             ("idle window measured (s)", "idle_s", 1, None),
             ("heartbeat comments received per stream in the window", "comments_per_stream", 2, None),
             ("time to connect all (s)", "connect_s", 2, "lower"), ("server peak RSS (MB)", "hwm_mb", 1, "lower")],
    "large": [("payload MB/s delivered", "mbps", 0, "higher"), ("deliveries/s", "dps", 0, "higher"),
              ("server CPU-s per GB", "cpu_per_gb", 3, "lower"), ("latency p99 under load (ms)", "p99", 1, "lower"),
              ("server peak RSS (MB)", "hwm_mb", 1, "lower"), ("loadgen CPU use (%)", "loadgen_pct", 0, None)],
    "dashboard": [("latency p50 (ms)", "p50", 2, "lower"), ("latency p90 (ms)", "p90", 2, "lower"),
                  ("latency p99 (ms)", "p99", 2, "lower"), ("latency max (ms)", "max", 2, "lower"),
                  ("deliveries/s", "dps", 0, "higher"), ("server CPU use (%)", "cpu_pct", 1, "lower"),
                  ("server CPU-s per 1M deliveries", "cpu_per_m", 3, "lower"), ("server peak RSS (MB)", "hwm_mb", 1, "lower")],
}


def correctness(rec):
    if "skipped" in rec:
        return rec["skipped"]
    if "error" in rec:
        return "ERROR: " + rec["error"]
    lg = rec["lg"]
    probs = []
    if lg["established"] != lg["subs"]:
        probs.append("%d/%d established" % (lg["established"], lg["subs"]))
    for k in ("gaps", "out_of_order", "lost", "duplicates", "id_regress", "pub_errors", "protocol_errors",
              "sub_closed_by_server", "window_stalls"):
        if lg.get(k):
            probs.append("%s=%s" % (k, lg[k]))
    if lg["end"] != "complete":
        probs.append("end=" + lg["end"])
    if lg.get("storm_subs"):
        if not lg["storm_started"]:
            probs.append("storm never started")
        elif lg["storm_caught"] != lg["storm_subs"] or lg["storm_failed"]:
            probs.append("storm: %d/%d live again, %d/%d caught up, %d not live at the start" % (
                lg["storm_live"], lg["storm_subs"], lg["storm_caught"], lg["storm_subs"], lg["storm_failed"]))
    if rec.get("stop_rc") != 0:
        probs.append("stop: %s" % rec.get("stop_rc"))
    if lg.get("error") and probs:
        probs.append("(%s)" % lg["error"])
    return "ok" if not probs else "; ".join(probs)


def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "os": sh(["sh", "-c", ". /etc/os-release 2>/dev/null && echo $PRETTY_NAME"]),
        "memory": mem,
        "libmicrohttpd": sh(["pkg-config", "--modversion", "libmicrohttpd"]),
        "node": sh(["node", "--version"]) if shutil.which("node") else "absent",
        "load average (1/5/15 min, at the end)": open("/proc/loadavg").read().split(" ")[:3],
        "repository": sh(["git", "-C", REPO, "describe", "--always", "--dirty"]),
        "pinning": "server taskset -c %s, loadgen taskset -c %s" % (SERVER_CPU, LOADGEN_CPU) if have_taskset() else "none (taskset or a second CPU missing)",
    }


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rec_rounds(by, scen):
    return by.get((scen, "two-hubs"), {}).get("rounds") or []


def write_microsse_only(L, by, scen_defs):
    """Sections for scenario 5 and the two-hub Redis scenarios, next to the matching HTTP figures
    of the same run."""
    def col(scen, srv):
        return metrics(by[(scen, srv)]) if (scen, srv) in by else {}
    if "inproc" in scen_defs:
        title, lg_args = scen_defs["inproc"]
        L.append("## %s" % title)
        L.append("")
        L.append("The server process publishes itself: `Benchmarks/inproc/inproc.swift` (`Server.publish`) and "
                 "`Benchmarks/inproc/inproc.c` (`msse_publish`, libmicrosse), one publisher thread that keeps "
                 "at most 128 events per subscriber not yet written to the sockets (from the server's "
                 "statistics), pinned with the server to CPU %s. Server CPU includes the publisher. "
                 "Next to them, the HTTP fan-out figures of this run (16 publisher connections, window 128). "
                 "No latency here: the window counts events handed to the sockets, not received, so events "
                 "can wait in socket buffers and publish→receive times measure the load generator's backlog."
                 % SERVER_CPU)
        L.append("")
        L.append("loadgen: `%s`" % " ".join(lg_args))
        L.append("")
        cols = [("Swift API", col("inproc", "swift-api")), ("C API", col("inproc", "c-api")),
                ("MicroSSE, HTTP publish", col("fanout", "microsse")), ("C ref, HTTP publish", col("fanout", "c-ref"))]
        hdr = ["metric"] + [c[0] for c in cols] + ["Swift API / HTTP", "C API / Swift API"]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for label, key, nd in [("deliveries/s", "dps", 0), ("server CPU-s per 1M deliveries", "cpu_per_m", 3),
                               ("server CPU use (%)", "cpu_pct", 0), ("server RSS at end (MB)", "rss_mb", 1)]:
            row = [label] + [fmt(c[1].get(key), nd) for c in cols]
            for a, b in ((cols[0][1].get(key), cols[2][1].get(key)), (cols[1][1].get(key), cols[0][1].get(key))):
                r = ratio(a, b)
                row.append(fmt(r, 2) + "×" if r is not None else "—")
            L.append("| " + " | ".join(row) + " |")
        keys = (("inproc", "swift-api"), ("inproc", "c-api"), ("fanout", "microsse"), ("fanout", "c-ref"))
        row = ["deliveries/s, every round (best shown)"] + [
            " / ".join(fmt(x["dps"], 0) + ("" if x["ok"] else " ✗") for x in by.get(k, {}).get("rounds") or []) or "—"
            for k in keys]
        L.append("| " + " | ".join(row + ["", ""]) + " |")
        row = ["correctness"] + [correctness(by[k]) if k in by else "not run" for k in keys]
        L.append("| " + " | ".join(row + ["", ""]) + " |")
        L.append("")
    redis = [s for s in ("redis-fanout", "redis-latency") if s in scen_defs]
    if redis:
        L.append("## Two hubs over Redis: what the hop costs")
        L.append("")
        L.append("Hub A takes the publishes (`POST`), hub B holds the subscribers; both run `microsse serve "
                 "--redis redis://127.0.0.1:PORT` against a throwaway `redis-server --save '' --appendonly no`. "
                 "Hub A, hub B and redis-server are all pinned to CPU %s (the same one core a single hub gets); "
                 "server CPU is the sum of the three. The one-hub column is MicroSSE in the fan-out and latency "
                 "scenarios of this run (same loadgen arguments)." % SERVER_CPU)
        L.append("")
        for scen in redis:
            title, lg_args = scen_defs[scen]
            single = {"redis-fanout": "fanout", "redis-latency": "latency"}[scen]
            one, two = col(single, "microsse"), col(scen, "two-hubs")
            L.append("### %s" % title)
            L.append("")
            L.append("loadgen: `%s`" % " ".join(lg_args))
            L.append("")
            L.append("| metric | one hub | two hubs over Redis | two / one |")
            L.append("|---|---|---|---|")
            for label, key, nd in [("deliveries/s", "dps", 0), ("latency p50 (ms)", "p50", 2),
                                   ("latency p99 (ms)", "p99", 2), ("latency max (ms)", "max", 2),
                                   ("server CPU-s per 1M deliveries (all server processes)", "cpu_per_m", 3),
                                   ("server CPU use (%)", "cpu_pct", 0)]:
                r = ratio(two.get(key), one.get(key))
                L.append("| %s | %s | %s | %s |" % (label, fmt(one.get(key), nd), fmt(two.get(key), nd),
                                                    fmt(r, 2) + "×" if r is not None else "—"))
            rec = by.get((scen, "two-hubs"), {})
            extra = rec.get("extra_cpu_s") or {}
            k1, k2 = PRIMARY[single][0], PRIMARY[scen][0]
            r1 = " / ".join(fmt(x[k1], 1) for x in by.get((single, "microsse"), {}).get("rounds") or [])
            r2 = " / ".join(fmt(x[k2], 1) + ("" if x["ok"] else " ✗") for x in rec_rounds(by, scen))
            L.append("| %s, every round (best shown) | %s | %s | |" % (
                next(l for l, k, _, _ in ROWS[single] if k == k1), r1 or "—", r2 or "—"))
            L.append("| correctness | %s | %s | |" % (correctness(by[(single, "microsse")]) if (single, "microsse") in by
                                                      else "not run", correctness(rec) if rec else "not run"))
            L.append("")
            if extra and rec.get("lg"):
                L.append("CPU-s by process: hub B %.2f, %s." % (rec["lg"]["server_cpu_s"], ", ".join(
                    "%s %.2f" % kv for kv in sorted(extra.items()))))
                L.append("")


SCALE_LABELS = {"1-hub": "1 hub, no Redis", "1-hub-redis": "1 hub + Redis", "2-hubs": "2 hubs + Redis",
                "3-hubs": "3 hubs + Redis"}


def write_scale(L, by, scen_defs):
    """Scale-out v2, item 4: 1, 2 and 3 hubs on one Redis; the resume storm; what it means."""
    scens = [s for s in ("scale-fanout", "scale-latency", "resume-storm") if s in scen_defs]
    if not scens:
        return
    L.append("## Scale-out: several hubs on one Redis")
    L.append("")
    L.append("Every hub is `microsse serve --redis redis://127.0.0.1:PORT` on one throwaway `redis-server --save '' "
             "--appendonly no` (the \"1 hub, no Redis\" column drops `--redis`). The subscribers are spread evenly "
             "over the hubs (loadgen `--sub-ports`: subscriber i on hub i mod n), the publisher posts to hub 1. All "
             "hubs and redis-server are pinned to CPU %s, the load generator to CPU %s; server CPU is the sum of all "
             "of them (CPU-s per 1M deliveries counts every server process)." % (SERVER_CPU, LOADGEN_CPU))
    L.append("")
    for scen in [s for s in scens if s.startswith("scale-")]:
        title, lg_args = scen_defs[scen]
        key = PRIMARY[scen][0]
        L.append("### %s" % title)
        L.append("")
        L.append("loadgen: `%s`" % " ".join(lg_args))
        L.append("")
        cols = [(v, by.get((scen, v), {})) for v, _, _ in SCALE_VARIANTS]
        ms = {v: metrics(r) if r else {} for v, r in cols}
        hdr = ["metric"] + [SCALE_LABELS[v] for v, _ in cols] + ["1 hub + Redis / no Redis", "3 hubs / 1 hub + Redis"]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        rows = [("deliveries/s", "dps", 0), ("latency p50 (ms)", "p50", 2), ("latency p99 (ms)", "p99", 2),
                ("latency max (ms)", "max", 2), ("server CPU-s per 1M deliveries (all server processes)", "cpu_per_m", 3),
                ("server CPU use (%, all server processes)", "cpu_pct", 0)]
        if scen == "scale-fanout":
            rows.insert(1, ("events published/s", "pub_per_s", 0))
        for label, k, nd in rows:
            row = [label] + [fmt(ms[v].get(k), nd) for v, _ in cols]
            for a, b in (("1-hub-redis", "1-hub"), ("3-hubs", "1-hub-redis")):
                r = ratio(ms[a].get(k), ms[b].get(k))
                row.append(fmt(r, 2) + "×" if r is not None else "—")
            L.append("| " + " | ".join(row) + " |")
        if any(r.get("rounds") for _, r in cols):
            label = next(l for l, k, _ in rows if k == key)
            row = ["%s, every round (best shown)" % label] + [
                " / ".join(fmt(x[key], 1) + ("" if x["ok"] else " ✗") for x in r.get("rounds") or []) or "—"
                for _, r in cols]
            L.append("| " + " | ".join(row + ["", ""]) + " |")
        L.append("| " + " | ".join(["correctness"] + [correctness(r) if r else "not run" for _, r in cols] + ["", ""]) + " |")
        L.append("")
        cpu = []
        for v, r in cols:
            if r.get("lg") and r.get("extra_cpu_s") is not None:
                parts = ["hub-1 %.2f" % r["lg"]["server_cpu_s"]] + ["%s %.2f" % kv for kv in sorted(r["extra_cpu_s"].items())]
                cpu.append("%s: %s" % (SCALE_LABELS[v], ", ".join(parts)))
        if cpu:
            L.append("CPU-s by process: %s." % "; ".join(cpu))
            L.append("")
    if "scale-latency" in scens:
        a, b = by.get(("scale-latency", "1-hub"), {}), by.get(("scale-latency", "1-hub-redis"), {})
        ma, mb = metrics(a) if a else {}, metrics(b) if b else {}
        if ma and mb:
            L.append("**The Redis hop at low load** (scale-out latency, 1 hub, same load): p50 %s ms → %s ms (+%s ms), "
                     "p99 %s ms → %s ms, server CPU-s per 1M deliveries %s → %s (redis-server included)." % (
                         fmt(ma.get("p50"), 2), fmt(mb.get("p50"), 2),
                         fmt(mb["p50"] - ma["p50"], 2) if ma.get("p50") is not None and mb.get("p50") is not None else "—",
                         fmt(ma.get("p99"), 2), fmt(mb.get("p99"), 2), fmt(ma.get("cpu_per_m"), 3),
                         fmt(mb.get("cpu_per_m"), 3)))
            L.append("")
    if "resume-storm" in scens:
        title, lg_args = scen_defs["resume-storm"]
        rec = by.get(("resume-storm", "storm"), {})
        m = metrics(rec) if rec else {}
        n_storm, n_all = int(lg_value(lg_args, "--storm-subs")), int(lg_value(lg_args, "--subs"))
        L.append("### %s" % title)
        L.append("")
        L.append("loadgen: `%s`; hub: `microsse serve --redis ... %s` (room for the streams being replaced while "
                 "their successors arrive)" % (" ".join(lg_args), " ".join(STORM_HUB_ARGS)))
        L.append("")
        L.append("Once all streams are established they settle for %s s; %s s after publishing starts, the load "
                 "generator closes %s streams and at once reopens all "
                 "of them, each with `Last-Event-ID` = the last id it received (the hub replays from Redis). Their per-"
                 "connection sequence checks carry on across the reconnect: a resume that loses or repeats an event "
                 "shows as lost/duplicates/gaps. The other %s streams (the steady set) never reconnect; their "
                 "publish→receive latency is split into before the storm (the idle figure), during it (until every "
                 "storm stream has received an event published after the storm began) and after." % (
                     lg_value(lg_args, "--hold"), lg_value(lg_args, "--storm-at"), fmt(n_storm, 0),
                     fmt(n_all - n_storm, 0)))
        L.append("")
        L.append("| metric | value |")
        L.append("|---|---|")
        L.append("| time until all %s are live again (response head received) (s) | %s |" % (
            fmt(n_storm, 0), fmt(m.get("storm_live_s"), 3)))
        L.append("| time until all have caught up (received an event published after the storm began) (s) | %s |" % (
            fmt(m.get("storm_caught_s"), 3)))
        for ph, label in (("before", "steady streams before the storm (idle)"), ("during", "steady streams during the storm"),
                          ("after", "steady streams after the storm"),
                          ("resumed", "storm streams from the storm on (replayed events included)")):
            L.append("| latency p50 / p99 / max, %s (ms; %s samples) | %s / %s / %s |" % (
                label, fmt(m.get("%s_n" % ph), 0), fmt(m.get("%s_p50" % ph), 2), fmt(m.get("%s_p99" % ph), 2),
                fmt(m.get("%s_max" % ph), 2)))
        r = ratio(m.get("during_p99"), m.get("before_p99"))
        L.append("| steady p99 during the storm / idle p99 (target ≤ 2×) | %s%s |" % (
            fmt(r, 2) + "×" if r is not None else "—", "" if r is None else (" (met)" if r <= 2.0 else " (**not met**)")))
        L.append("| server CPU use (%%, hub + redis-server) | %s |" % fmt(m.get("cpu_pct"), 0))
        L.append("| server peak RSS (MB) | %s |" % fmt(m.get("hwm_mb"), 1))
        L.append("| resumes that started with a `microsse.gap` event (counted as foreign events) | %s |" % (
            fmt(rec["lg"].get("foreign"), 0) if rec.get("lg") else "—"))
        L.append("| connection attempts dropped by a full listen queue during the run (each retried by its client "
                 "1 s later: they set the time until all are live again) | %s |" % fmt(rec.get("listen_drops"), 0))
        L.append("| correctness | %s |" % (correctness(rec) if rec else "not run"))
        L.append("")
        if rec.get("lg") and rec.get("extra_cpu_s") is not None:
            L.append("CPU-s by process: hub %.2f (measured phase), %s (whole run)." % (rec["lg"]["server_cpu_s"], ", ".join(
                "%s %.2f" % kv for kv in sorted(rec["extra_cpu_s"].items()))))
            L.append("")
    L.append("**What these figures mean for a real cluster.** On this 2-core machine every hub and redis-server "
             "share one core (CPU %s) and the load generator has the other, so adding hubs here adds no capacity: "
             "2 and 3 hubs split the same core's time between more processes, and each extra hub adds its own Redis "
             "reader, parsing and polling loop. The deliveries/s of the 2- and 3-hub columns are therefore a floor "
             "for the per-hub overhead, not the throughput of a cluster; what carries over is the CPU per delivery "
             "and the latency added by the hop. In a real cluster each hub has its own cores and subscribers, so "
             "fan-out (the cost that grows with subscribers) scales with the number of hubs, while every event still "
             "goes through Redis once and is read back once per hub. The first bottleneck is then one Redis "
             "server's single thread: every publish of its channels runs the publish script, and every hub's reader "
             "`XREAD`s its global stream `PREFIX:all`. Past it, add shards (`--redis` repeated: each channel lives "
             "on one shard by a hash of its name, every hub reads every shard; see the publishing-through-Redis "
             "table, its cluster on paper, and docs/REDIS.md \"Shards\"). The resume storm shows the other side: "
             "a resume is placed with one Redis round trip (one MULTI/EXEC) and its replay is read in pages as the "
             "stream drains, so a mass reconnect costs Redis round trips in proportion to the streams and pages, "
             "and the replays are paced rather than queued whole. The time until all are live again is mostly the hub "
             "accepting thousands of connections at once: attempts the full listen queue dropped come back a "
             "second later (Benchmarks/FINDINGS.md, the resume storm)." % SERVER_CPU)
    L.append("")


def best_round(scen, recs):
    """The round the report shows: the best primary figure among correct rounds (else the first);
    every round's figure is kept in rec["rounds"]."""
    if len(recs) == 1:
        return recs[0]
    key, pick = PRIMARY[scen]
    scored = [(metrics(r).get(key), r) for r in recs]
    good = [(v, r) for v, r in scored if v is not None and correctness(r) == "ok"]
    best = pick(good, key=lambda vr: vr[0])[1] if good else recs[0]
    best = dict(best)
    best["rounds"] = [{"round": r["round"], key: v, "ok": correctness(r) == "ok"} for v, r in scored]
    best["all_rounds"] = recs
    return best


def write_report(path, results, servers, scen_defs, args, started, elapsed):
    names = [s[0] for s in servers if s[0] in HEADLINE_SERVERS]
    runnable = [s[0] for s in servers if s[1] is not None]
    by = {(r["scenario"], r["server"]): r for r in results}
    mi = machine()
    L = []
    L.append("# MicroSSE benchmarks")
    L.append("")
    L.append("Written by `Benchmarks/run.py` (not by hand) on %s in %.0f s." % (started, elapsed))
    L.append("")
    L.append("Command: `%s`" % args.invoked_as if args.invoked_as else "Command: `%s`" % " ".join([sys.executable] + sys.argv))
    L.append("")
    L.append("| machine | |")
    L.append("|---|---|")
    for k in ("nproc", "cpu", "kernel", "os", "memory", "libmicrohttpd", "node", "repository", "pinning",
              "load average (1/5/15 min, at the end)"):
        v = mi[k]
        L.append("| %s | %s |" % (k, " / ".join(v) if isinstance(v, list) else v))
    la = float(mi["load average (1/5/15 min, at the end)"][1])
    if la > 2.5:
        L.append("")
        L.append("> Warning: the 5-minute load average was %.1f on %d CPUs: other processes competed with the "
                 "pinned server and load generator, so absolute figures are low and ratios are noisy. "
                 "Re-run on a quiet machine." % (la, os.cpu_count() or 0))
    L.append("")
    L.append("Servers, each at the defaults its own users would run (see `Benchmarks/README.md`):")
    L.append("")
    about = {"microsse": "MicroSSE's shipped defaults: heartbeats every 15 s, publishing on, 10,000 streams, "
                         "libmicrohttpd's 32 KiB pool (idle streams give unused pages back)",
             "c-ref": "the C reference on libmicrohttpd directly, at libmicrohttpd's defaults (32 KiB per "
                      "connection) and its own block 1024",
             "node": "the classic Node.js `http` hub"}
    for name, argv, note in servers:
        L.append("- **%s**: %s%s" % (name, ("`%s`" % note) if argv else note,
                                     " — " + about[name] if argv and name in about else ""))
    L.append("")
    L.append("Each server runs alone, restarted for every scenario, pinned to CPU %s; the load generator "
             "(`Benchmarks/loadgen`, C + epoll) runs on CPU %s. Server CPU is utime+stime from "
             "`/proc/PID/stat` over the measured phase (after all subscribers are connected), memory is "
             "`VmRSS`/`VmHWM` from `/proc/PID/status`. Latency is publish→receive: the publisher writes "
             "CLOCK_MONOTONIC into each event just before writing the POST; the subscriber reads the clock "
             "when the event is parsed. Every delivery is checked per connection for gaps, reordering, "
             "duplicates and increasing ids. These machines are noisy: compare ratios within one run, "
             "not absolute figures across runs. The throughput, latency and idle scenarios run in %d interleaved "
             "round(s) (every server once per round; latency %d), and each table shows a server's best "
             "round by its headline figure and lists every round's." % (
                 SERVER_CPU, LOADGEN_CPU, args.repeat, max(args.repeat, MIN_ROUNDS["latency"]) if args.repeat > 1 else 1))
    L.append("")
    if "idle" in scen_defs:
        hold = float(lg_value(scen_defs["idle"][1], "--hold"))
        settle = float(lg_value(scen_defs["idle"][1], "--settle")) if "--settle" in scen_defs["idle"][1] else 0.0
        L.append("The idle window is the %g s hold that starts %g s after the last stream is established "
                 "(its CPU, RSS and comments are the window's). MicroSSE's heartbeat timer ticks every 15 s and "
                 "gives a comment to each stream with nothing since the previous tick, so %s." % (
                     hold, settle, "the window holds the tick that writes one to every stream: MicroSSE's idle "
                     "CPU is one heartbeat interval of an idle server" if settle >= 15 and hold >= 15 else
                     "this window may hold no tick that writes a heartbeat: its idle CPU need not include one"))
        L.append("")
    have_m = "microsse" in runnable
    have_c = "c-ref" in runnable
    have_n = "node" in runnable
    for scen in [s for s in ORDER if s in scen_defs and s not in MICROSSE_ONLY]:
        title, lg_args = scen_defs[scen]
        L.append("## %s" % title)
        L.append("")
        L.append("loadgen: `%s`" % " ".join(lg_args))
        L.append("")
        hdr = ["metric"] + names
        if have_m and have_c:
            hdr.append("MicroSSE / C ref")
        if have_m and have_n:
            hdr.append("MicroSSE / node")
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        ms = {n: metrics(by[(scen, n)]) if (scen, n) in by else {} for n in names}
        for label, key, nd, _better in ROWS[scen]:
            row = [label] + [fmt(ms[n].get(key), nd) for n in names]
            if have_m and have_c:
                r = ratio(ms["microsse"].get(key), ms["c-ref"].get(key))
                row.append(fmt(r, 2) + "×" if r is not None else "—")
            if have_m and have_n:
                r = ratio(ms["microsse"].get(key), ms["node"].get(key))
                row.append(fmt(r, 2) + "×" if r is not None else "—")
            L.append("| " + " | ".join(row) + " |")
        if scen in PRIMARY and any(by.get((scen, n), {}).get("rounds") for n in names):
            key, pick = PRIMARY[scen]
            label, digits = next((l, max(1, nd)) for l, k, nd, _ in ROWS[scen] if k == key)
            cells = []
            for n in names:
                rr = by.get((scen, n), {}).get("rounds") or []
                cells.append(" / ".join(fmt(x[key], digits) + ("" if x["ok"] else " ✗") for x in rr) or "—")
            row = ["%s, every round (best shown)" % label] + cells
            row += [""] * (len(hdr) - len(row))
            L.append("| " + " | ".join(row) + " |")
        row = ["correctness"] + [correctness(by[(scen, n)]) if (scen, n) in by else "not run" for n in names]
        row += [""] * (len(hdr) - len(row))
        L.append("| " + " | ".join(row) + " |")
        L.append("")
    write_microsse_only(L, by, scen_defs)
    write_scale(L, by, scen_defs)
    redis_publish.write(sys.modules[__name__], L, by, scen_defs)
    mercure_bench.write_mercure(L, by, scen_defs, metrics, correctness, fmt, ratio)
    L.append("## Targets")
    L.append("")
    L.append("Against the C reference at libmicrohttpd's defaults, MicroSSE at its own defaults (heartbeats on).")
    L.append("")
    if not have_m:
        L.append("MicroSSE was not run (%s), so no target can be judged yet. The C reference's own figures "
                 "above are the bar." % next((s[2] for s in servers if s[0] == "microsse"), "not selected"))
    else:
        def g(scen, srv, key):
            return metrics(by[(scen, srv)]).get(key) if (scen, srv) in by else None
        L.append("| target | measured | met |")
        L.append("|---|---|---|")

        def line(name, val, ok):
            L.append("| %s | %s | %s |" % (name, val, "—" if ok is None else ("yes" if ok else "**no**")))
        if "fanout" in scen_defs:
            r = ratio(g("fanout", "microsse", "dps"), g("fanout", "c-ref", "dps"))
            line("fan-out deliveries/s ≥ 1.0 × C reference", fmt(r, 2) + "×" if r else "—", None if r is None else r >= 1.0)
        if "latency" in scen_defs:
            r = ratio(g("latency", "microsse", "p99"), g("latency", "c-ref", "p99"))
            lat = scen_defs["latency"][1]
            line("latency p99 (%s subscribers × %s events/s) ≤ 1.0 × C reference" % (
                fmt(int(lg_value(lat, "--subs")), 0), lg_value(lat, "--rate")), fmt(r, 2) + "×" if r else "—",
                 None if r is None else r <= 1.0)
        if "idle" in scen_defs:
            est, rss, pct = g("idle", "microsse", "established"), g("idle", "microsse", "rss_per_stream_kb"), g("idle", "microsse", "cpu_pct")
            want = int(lg_value(scen_defs["idle"][1], "--subs"))
            line("idle: all %s streams established" % fmt(want, 0), fmt(est, 0), None if est is None else est == want)
            line("idle: ≤ 6 KB RSS per stream", fmt(rss, 2) + " KB", None if rss is None else rss <= 6.0)
            line("idle: < 0.5% of a core (heartbeats on)", fmt(pct, 2) + "%", None if pct is None else pct < 0.5)
        if "large" in scen_defs:
            r = ratio(g("large", "microsse", "mbps"), g("large", "c-ref", "mbps"))
            line("large payloads MB/s ≥ 0.95 × C reference", fmt(r, 2) + "×" if r else "—", None if r is None else r >= 0.95)
        if "dashboard" in scen_defs:
            dash = scen_defs["dashboard"][1]
            subs, rate = fmt(int(lg_value(dash, "--subs")), 0), lg_value(dash, "--rate")
            for key in ("p50", "p99"):
                m_, c_ = g("dashboard", "microsse", key), g("dashboard", "c-ref", key)
                r = ratio(m_, c_)
                line("dashboard (%s subscribers × %s events/s): latency %s, MicroSSE / C reference (no target yet)"
                     % (subs, rate, key), "%s ms / %s ms = %s" % (fmt(m_, 2), fmt(c_, 2), fmt(r, 2) + "×" if r else "—"), None)
        if "resume-storm" in scen_defs and ("resume-storm", "storm") in by:
            ms_ = metrics(by[("resume-storm", "storm")])
            r = ratio(ms_.get("during_p99"), ms_.get("before_p99"))
            line("resume storm (%s streams reconnect at once, one hub with Redis): steady streams' p99 during the "
                 "storm ≤ 2 × idle p99" % fmt(int(lg_value(scen_defs["resume-storm"][1], "--storm-subs")), 0),
                 "%s ms / %s ms = %s" % (fmt(ms_.get("during_p99"), 2), fmt(ms_.get("before_p99"), 2),
                                         fmt(r, 2) + "×" if r else "—"), None if r is None else r <= 2.0)
    L.append("")
    findings = os.path.join(HERE, "FINDINGS.md")
    if os.path.exists(findings) and not args.smoke:
        L.append("## Findings")
        L.append("")
        L.append("From `Benchmarks/FINDINGS.md` (the analysis behind the figures, kept with the code; every "
                 "figure above is this run's).")
        L.append("")
        L.append(open(findings).read().strip())
        L.append("")
    L.append("Raw results: `Benchmarks/results/%s.json`; server logs: `Benchmarks/results/logs/`." % args.name)
    L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny scenarios (seconds); report to results/smoke.md")
    ap.add_argument("--servers", default=",".join(SERVER_ORDER), help="comma list of " + ",".join(SERVER_ORDER))
    ap.add_argument("--scenarios", default=",".join(ORDER), help="comma list of " + ",".join(ORDER))
    ap.add_argument("--microsse-cmd", default=None,
                    help="MicroSSE command, {port} is replaced (env MICROSSE_CMD; default: %s)" % DEFAULT_MICROSSE)
    ap.add_argument("--cref-args", default=None,
                    help="flags added to the headline C reference (env CREF_ARGS; default: none, its own defaults)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="rounds of fan-out, latency and large, interleaved; the best is reported (default 2, smoke 1)")
    ap.add_argument("--out", default=None, help="report path (default: ../docs/BENCHMARKS.md, or results/smoke.md with --smoke)")
    ap.add_argument("--invoked-as", default=None, help="the command line to print in the report")
    args = ap.parse_args()
    args.name = "smoke" if args.smoke else "bench"
    if args.repeat is None:
        args.repeat = 1 if args.smoke else 2
    if not os.path.exists(LOADGEN):
        sys.exit("run.py: %s not built: run `make -C Benchmarks` first" % LOADGEN)
    raise_nofile()
    scen_all = SCENARIOS["smoke" if args.smoke else "full"]
    wanted = [s for s in args.scenarios.split(",") if s]
    for s in wanted:
        if s not in scen_all:
            sys.exit("run.py: unknown scenario %s" % s)
    scen_defs = {s: scen_all[s] for s in ORDER if s in wanted}
    servers = server_commands(args)
    servers.sort(key=lambda s: SERVER_ORDER.index(s[0]))
    os.makedirs(os.path.join(RESULTS, "logs"), exist_ok=True)
    out = args.out or (os.path.join(RESULTS, "smoke.md") if args.smoke else os.path.join(REPO, "docs", "BENCHMARKS.md"))
    for name, argv, note in servers:
        if argv is None:
            log("%-8s %s" % (name, note))
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    t0 = time.time()
    results = []
    for scen in scen_defs:
        title, lg_args = scen_defs[scen]
        log("== %s" % title)
        if scen in MICROSSE_ONLY:
            by_variant = {}
            for rnd in range(args.repeat if scen in PRIMARY else 1):
                for rec in run_microsse_only(scen, title, lg_args, servers, os.path.join(RESULTS, "logs")):
                    rec["round"] = rnd + 1
                    by_variant.setdefault(rec["server"], []).append(rec)
                    m = metrics(rec)
                    brief = ", ".join("%s=%s" % (k, fmt(v, 3)) for k, v in m.items() if k in (
                        "dps", "cpu_per_m", "p50", "p99", "max", "cpu_pct"))
                    if scen == "resume-storm":
                        brief = ", ".join("%s=%s" % (k, fmt(m.get(k), 3)) for k in (
                            "storm_live_s", "storm_caught_s", "before_p99", "during_p99", "resumed_p99"))
                    log("   %-11s %s  [%s]" % (rec["server"], brief or "-", correctness(rec)))
            for recs in by_variant.values():
                results.append(best_round(scen, recs))
            continue
        rounds = args.repeat if scen in PRIMARY else 1
        if scen in MIN_ROUNDS and args.repeat > 1:
            rounds = max(rounds, MIN_ROUNDS[scen])
        by_server = {}
        for rnd in range(rounds):
            for name, argv, _ in servers:
                if argv is None:
                    continue
                rec = run_one(name, argv, scen, title, lg_args, os.path.join(RESULTS, "logs"))
                rec["round"] = rnd + 1
                by_server.setdefault(name, []).append(rec)
                m = metrics(rec)
                brief = ", ".join("%s=%s" % (k, fmt(v, 3)) for k, v in m.items() if k in (
                    "dps", "cpu_per_m", "p50", "p99", "max", "established", "rss_per_stream_kb", "idle_cpu_s", "mbps", "cpu_pct", "loadgen_pct"))
                log("   %-8s %s  [%s]" % (name, brief or "-", correctness(rec)))
        for name, recs in by_server.items():
            results.append(best_round(scen, recs))
    elapsed = time.time() - t0
    with open(os.path.join(RESULTS, "%s.json" % args.name), "w") as f:
        json.dump({"started": started, "elapsed_s": elapsed, "servers": [[s[0], s[2]] for s in servers],
                   "results": results}, f, indent=1)
    write_report(out, results, servers, scen_defs, args, started, elapsed)
    log("report: %s (%.0f s)" % (os.path.relpath(out, os.getcwd()), elapsed))
    bad = [r for r in results if correctness(r) != "ok" and "skipped" not in r]
    if bad:
        log("note: %d run(s) with problems: %s" % (len(bad), ", ".join("%s/%s" % (r["scenario"], r["server"]) for r in bad)))


if __name__ == "__main__":
    main()
