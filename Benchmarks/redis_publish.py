"""Scale-out v3 scenarios of run.py: `redis-publish` (publishes/s of one hub alone, on 1 Redis,
on 2 and 3 shards, and Redis CPU per publish per shard) and `shard-fanout` (2 hubs on 1 Redis and
on 2 shards: deliveries/s and p99).

Hubs run pinned to the server CPU; every redis-server runs beside the load generator (as the
issue measured: on two cores Redis shares the load tool's core). Redis figures: before the load
`CONFIG RESETSTAT`, after it `INFO commandstats` and `INFO cpu` of each shard. A hub that refuses
a second `--redis` (a build without shards), or uses only one of them, makes its row a "needs
shards" note, not an error. REDIS_URL_QUERY (e.g. `?workers=1`) is appended to every `--redis` URL.
"""
import os
import socket
import subprocess
import time

# Commands only the publish script calls: their time is inside its EVALSHA already.
SCRIPT_ONLY = {"xadd", "xlen", "set", "get", "incrby", "decrby", "hincrby", "hset", "hget", "hdel", "zadd",
               "zrange", "zrem", "zcard", "zpopmin", "expire", "xtrim", "xdel"}

# (variant, hubs, shards)
PUBLISH_VARIANTS = [("alone", 1, 0), ("1-redis", 1, 1), ("2-shards", 1, 2), ("3-shards", 1, 3)]
FANOUT_VARIANTS = [("2-hubs-1-redis", 2, 1), ("2-hubs-2-shards", 2, 2)]
LABELS = {"alone": "1 hub alone", "1-redis": "1 hub, 1 Redis", "2-shards": "1 hub, 2 shards",
          "3-shards": "1 hub, 3 shards", "2-hubs-1-redis": "2 hubs, 1 Redis", "2-hubs-2-shards": "2 hubs, 2 shards"}


def resp(port, *args, timeout=5):
    """One command to 127.0.0.1:port over RESP; → the reply's text (a bulk string, a status or an
    error line), or None when Redis cannot be reached."""
    msg = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(msg)
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
            head, rest = buf.split(b"\r\n", 1)
            if head[:1] != b"$":
                return head[1:].decode(errors="replace")
            n = int(head[1:])
            while len(rest) < n + 2:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                rest += chunk
            return rest[:n].decode(errors="replace")
    except (OSError, ValueError):
        return None


def redis_figures(port):
    """{"cmd_usec": top-level command time (µs), "cpu_s": used_cpu_user + used_cpu_sys, "calls": {cmd: calls}}."""
    stats = resp(port, "INFO", "commandstats") or ""
    cpu = resp(port, "INFO", "cpu") or ""
    usec, calls = 0, {}
    for line in stats.splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name, _, fields = line[len("cmdstat_"):].partition(":")
        kv = dict(f.split("=", 1) for f in fields.split(",") if "=" in f)
        calls[name] = int(kv.get("calls", 0))
        if name not in SCRIPT_ONLY:
            usec += int(kv.get("usec", 0))
    kv = dict(l.split(":", 1) for l in cpu.splitlines() if ":" in l)
    cpu_s = float(kv.get("used_cpu_user", 0)) + float(kv.get("used_cpu_sys", 0))
    return {"cmd_usec": usec, "cpu_s": cpu_s, "calls": calls}


def run_variant(ctx, margv_t, scen, lg_args, logdir, variant, hubs, shards):
    """`hubs` MicroSSE hubs, each with one `--redis` per shard (none for 0), pinned to the server
    CPU; `shards` throwaway redis-servers on the load generator's CPU; the publisher on hub 1, the
    subscribers spread over the hubs."""
    rec = {"server": variant, "scenario": scen}
    procs, logs = [], []
    try:
        rports = []
        for i in range(shards):
            rport = ctx.free_port()
            rlog = open(os.path.join(logdir, "%s-%s-redis-%d.log" % (scen, variant, i + 1)), "w")
            logs.append(rlog)
            p = subprocess.Popen(ctx.pinned(ctx.LOADGEN_CPU, ["redis-server", "--port", str(rport), "--bind",
                                                              "127.0.0.1", "--save", "", "--appendonly", "no"]),
                                 stdout=rlog, stderr=subprocess.STDOUT, cwd=ctx.HERE)
            procs.append(("redis-%d" % (i + 1), p))
            if not ctx.redis_ping(rport, 10):
                rec["error"] = "redis-server did not answer PING within 10 s"
                return rec
            rports.append(rport)
        extra = []
        for rport in rports:
            extra += ["--redis", "redis://127.0.0.1:%d%s" % (rport, os.environ.get("REDIS_URL_QUERY", ""))]
        ports, hub_procs = [], []
        for h in range(hubs):
            port = ctx.free_port()
            argv = [a.replace("{port}", str(port)) for a in margv_t] + extra
            path = os.path.join(logdir, "%s-%s-hub-%d.log" % (scen, variant, h + 1))
            lf = open(path, "w")
            logs.append(lf)
            p = subprocess.Popen(ctx.pinned(ctx.SERVER_CPU, argv), stdout=lf, stderr=subprocess.STDOUT,
                                 preexec_fn=ctx.raise_nofile, cwd=ctx.HERE)
            procs.append(("hub-%d" % (h + 1), p))
            if not ctx.healthy(port, 15, p):
                lf.flush()
                tail = open(path, errors="replace").read()[-160:].strip().replace("\n", " / ").replace("|", "/")
                if shards > 1 and p.poll() is not None:
                    rec["skipped"] = "needs shards: this build refuses a second --redis (%s)" % tail
                else:
                    rec["error"] = "hub %d did not answer GET /healthz within 15 s: %s" % (h + 1, tail)
                return rec
            ports.append(port)
            hub_procs.append(p)
        for rport in rports:
            resp(rport, "CONFIG", "RESETSTAT")
        before = [redis_figures(rport) for rport in rports]
        cpu0 = {n: ctx.proc_cpu_s(p.pid) for n, p in procs if n != "hub-1"}
        cmd = [ctx.LOADGEN, "--port", str(ports[0]), "--pub-port", str(ports[0]), "--server-pid",
               str(hub_procs[0].pid), "--label", "%s/%s" % (scen, variant)]
        if hubs > 1:
            cmd += ["--sub-ports", ",".join(str(p) for p in ports)]
        try:
            p = subprocess.run(ctx.pinned(ctx.LOADGEN_CPU, cmd + lg_args), capture_output=True, text=True,
                               timeout=240)
        except subprocess.TimeoutExpired:
            rec["error"] = "loadgen timed out"
            return rec
        cpu1 = {n: ctx.proc_cpu_s(p_.pid) for n, p_ in procs if n != "hub-1"}
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if p.returncode != 0 or not lines:
            rec["error"] = "loadgen failed (%d): %s" % (p.returncode, p.stderr.strip()[-300:])
            return rec
        rec["lg"] = ctx.json.loads(lines[-1])
        # Hubs other than the first count in the server CPU; redis-servers run on the loadgen's CPU.
        rec["extra_cpu_s"] = {n: round(cpu1[n] - cpu0[n], 3) for n in cpu0
                              if n.startswith("hub") and cpu0[n] is not None and cpu1[n] is not None}
        published = rec["lg"]["published"] or 1
        rec["shards"] = []
        idle = []
        for rport, b in zip(rports, before):
            a = redis_figures(rport)
            rec["shards"].append({
                "cmd_us_per_pub": (a["cmd_usec"] - b["cmd_usec"]) / published,
                "cpu_us_per_pub": (a["cpu_s"] - b["cpu_s"]) * 1e6 / published,
                "calls": a["calls"]})
            if not any(a["calls"].get(c) for c in ("evalsha", "eval", "xadd")):
                idle.append(rport)
        if shards > 1 and idle:
            rec["skipped"] = "needs shards: the hub published to only %d of its %d --redis servers" % (
                shards - len(idle), shards)
    finally:
        rcs = {}
        for n, p in reversed(procs):
            if n.startswith("redis"):
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            else:
                rcs[n] = ctx.stop_proc(p)
        bad = {n: rc for n, rc in rcs.items() if rc != 0}
        rec["stop_rc"] = 0 if not bad else ", ".join("%s: %s" % kv for kv in bad.items())
        for lf in logs:
            lf.close()
    return rec


def run(ctx, scen, lg_args, margv_t, logdir):
    variants = PUBLISH_VARIANTS if scen == "redis-publish" else FANOUT_VARIANTS
    out = []
    for variant, hubs, shards in variants:
        if shards and not ctx.shutil.which("redis-server"):
            out.append({"server": variant, "scenario": scen, "error": "redis-server not found"})
            continue
        out.append(run_variant(ctx, margv_t, scen, lg_args, logdir, variant, hubs, shards))
        time.sleep(0.2)
    return out


def write(ctx, L, by, scen_defs):
    scens = [s for s in ("redis-publish", "shard-fanout") if s in scen_defs]
    if not scens:
        return
    fmt, ratio, metrics, correctness = ctx.fmt, ctx.ratio, ctx.metrics, ctx.correctness
    L.append("## Publishing through Redis, and shards")
    L.append("")
    L.append("Hubs are `microsse serve` with one `--redis redis://127.0.0.1:PORT` per shard (none for \"alone\"), "
             "pinned to CPU %s; every throwaway `redis-server --save '' --appendonly no` runs on CPU %s beside the "
             "load generator. Redis CPU per publish is, per shard, `used_cpu_user + used_cpu_sys` (INFO cpu) and the "
             "time of the commands the hubs sent (INFO commandstats: EVALSHA, XREAD, WAIT, ...; the script's own "
             "XADDs are inside EVALSHA), from `CONFIG RESETSTAT` before the load, divided by the events published."
             % (ctx.SERVER_CPU, ctx.LOADGEN_CPU))
    L.append("")
    for scen in scens:
        title, lg_args = scen_defs[scen]
        variants = PUBLISH_VARIANTS if scen == "redis-publish" else FANOUT_VARIANTS
        L.append("### %s" % title)
        L.append("")
        L.append("loadgen: `%s`" % " ".join(lg_args))
        L.append("")
        cols = [(v, by.get((scen, v), {})) for v, _, _ in variants]
        ms = {v: metrics(r) if r.get("lg") else {} for v, r in cols}
        L.append("| metric | " + " | ".join(LABELS[v] for v, _ in cols) + " |")
        L.append("|---|" + "---|" * len(cols))
        base = variants[0][0]
        rows = [("events published/s", "pub_per_s", 0)] if scen == "redis-publish" else [
            ("deliveries/s", "dps", 0), ("latency p99 (ms)", "p99", 2), ("events published/s", "pub_per_s", 0)]
        for label, k, nd in rows:
            L.append("| %s | " % label + " | ".join(
                r.get("skipped", "") and "—" or fmt(ms[v].get(k), nd) for v, r in cols) + " |")
            L.append("| %s, × %s | " % (label, LABELS[base]) + " | ".join(
                (fmt(ratio(ms[v].get(k), ms[base].get(k)), 2) + "×") if ms[v].get(k) and not r.get("skipped") else "—"
                for v, r in cols) + " |")
        for label, k in (("Redis CPU µs per publish, per shard (process)", "cpu_us_per_pub"),
                         ("Redis command µs per publish, per shard (commandstats)", "cmd_us_per_pub")):
            L.append("| %s | " % label + " | ".join(
                (" / ".join(fmt(s[k], 1) for s in r.get("shards", [])) or "—") if not r.get("skipped") else "—"
                for _, r in cols) + " |")
        L.append("| correctness | " + " | ".join(
            r["skipped"] if r.get("skipped") else (correctness(r) if r else "not run") for _, r in cols) + " |")
        L.append("")
    write_paper(ctx, L, by)


def write_paper(ctx, L, by):
    """What the figures mean for a real cluster of N hubs and M Redis servers (on paper)."""
    alone, one = by.get(("redis-publish", "alone"), {}), by.get(("redis-publish", "1-redis"), {})
    fan = by.get(("fanout", "microsse"), {}) or by.get(("shard-fanout", "2-hubs-1-redis"), {})
    if not alone.get("lg") or not one.get("shards"):
        return
    hub = alone["lg"]["pub_per_s"]
    cost = one["shards"][0]["cpu_us_per_pub"]
    per_redis = 1e6 / cost if cost > 0 else None
    dps = fan["lg"]["deliveries_per_s"] if fan.get("lg") else None
    if per_redis is None:
        return
    L.append("**On paper: a cluster of N hubs and M Redis servers**, each on cores of its own, from this run's "
             "figures: a hub publishes at most %s events/s (\"1 hub alone\"), a Redis server spends %.1f µs of its "
             "one thread per publish (\"1 hub, 1 Redis\", process CPU, one reader), so it carries about %s "
             "publishes/s; each further hub's reader adds its `XREAD`s (1–2 µs per publish). A hub holds 10,000 "
             "streams at its defaults (`--max-clients`)%s. On these 2-core machines the shard columns above are CPU "
             "per publish, not capacity: all shards share one core with the load generator." % (
                 ctx.fmt(hub, 0), cost, ctx.fmt(per_redis, 0),
                 " and fans out about %s deliveries/s (fan-out scenario)" % ctx.fmt(dps, 0) if dps else ""))
    L.append("")
    L.append("| hubs × Redis servers | streams | publishes/s (all channels) | deliveries/s | first bottleneck |")
    L.append("|---|---|---|---|---|")
    for n, m in ((1, 1), (4, 1), (4, 2), (8, 2), (16, 4)):
        pubs = min(n * hub, m * per_redis)
        first = "the hubs' HTTP publishing" if n * hub <= m * per_redis else "Redis (add a shard)"
        L.append("| %d × %d | %s | %s | %s | %s |" % (
            n, m, ctx.fmt(n * 10000, 0), ctx.fmt(pubs, 0), ctx.fmt(n * dps, 0) if dps else "—", first))
    L.append("")
