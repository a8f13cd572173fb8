"""The Mercure scenario of run.py (docs/MERCURE.md): one hub serving Mercure, three kinds of
subscribers, in interleaved rounds, each on a fresh hub:

  events      1,000 subscribers on /events/bench (a channel), channel publishes
  match       1,000 subscribers on /.well-known/mercure?match=bench, Mercure publishes (topic bench)
  urlpattern  1,000 subscribers each on a different URL pattern, all matching the topic
              https://bench.example/books/1 (`https://bench.example/:kind/:id{/s<i>}?`, i = the
              subscriber's index), Mercure publishes

Every variant runs the same hub command (MicroSSE's, plus --mercure and its JWT settings; the
channel is public and the publisher presents one token that is both the static publish token
and a draft-08 access token), so the ratio match / events is the Mercure endpoint's cost.
"""

import base64
import hashlib
import hmac
import json
import time
import urllib.parse

SECRET = "bench-mercure-secret-0123456789abcdef0123"
ISSUER = "https://bench.example"
AUDIENCE = "https://bench.example/.well-known/mercure"
PATTERN_TOPIC = "https://bench.example/books/1"
VARIANTS = ["events", "match", "urlpattern"]


def access_token():
    """A draft-08 access token publishing to every topic, valid for two hours."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "at+jwt"}).encode())
    detail = {"type": "https://mercure.rocks/authorization-detail", "actions": ["publish"], "topics": [{"match": "*"}]}
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 7200, "authorization_details": [detail]}
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = b64(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def hub_command(microsse_argv, token):
    return microsse_argv + ["--mercure", "--jwt-secret", SECRET, "--mercure-issuer", ISSUER, "--mercure-audience",
                            AUDIENCE, "--public-channel", "bench", "--publish-token", token]


def variant_args(variant, token):
    """The loadgen arguments a variant adds: where subscribers go, how the publisher posts."""
    auth = ["--pub-token", token]
    if variant == "events":
        return ["--channel", "bench"] + auth
    if variant == "match":
        return ["--sub-path", "/.well-known/mercure?match=bench", "--mercure-topic", "bench"] + auth
    q = urllib.parse.quote
    pattern = q("https://bench.example/:kind/:id{/s", safe="") + "{i}" + q("}?", safe="")
    return ["--sub-path", "/.well-known/mercure?match_urlpattern=" + pattern, "--mercure-topic", PATTERN_TOPIC] + auth


def run_mercure(run_one, microsse_argv, scen, title, lg_args, logdir):
    token = access_token()
    return [run_one(v, hub_command(microsse_argv, token), scen, title, lg_args + variant_args(v, token), logdir)
            for v in VARIANTS]


def write_mercure(L, by, scen_defs, metrics, correctness, fmt, ratio):
    scen = "mercure-fanout"
    if scen not in scen_defs:
        return
    title, lg_args = scen_defs[scen]
    L.append("## %s" % title)
    L.append("")
    L.append("One hub command for every column: MicroSSE with `--mercure` (draft-08), `--public-channel bench` "
             "and one publisher token. `events`: `GET /events/bench`, `POST /events/bench`. `match`: "
             "`GET /.well-known/mercure?match=bench`, Mercure form publishes of topic `bench`. `urlpattern`: "
             "subscriber *i* on `match_urlpattern=https://bench.example/:kind/:id{/s`*i*`}?` (%s different "
             "patterns, every one matching), updates of topic `%s`. Target: match ≥ 0.9 × events."
             % (format(int(lg_args[lg_args.index("--subs") + 1]), ","), PATTERN_TOPIC))
    L.append("")
    L.append("loadgen: `%s`" % " ".join(lg_args))
    L.append("")
    cols = [(v, metrics(by[(scen, v)]) if (scen, v) in by else {}) for v in VARIANTS]
    L.append("| metric | events | match | urlpattern | match / events | urlpattern / events |")
    L.append("|---|---|---|---|---|---|")
    for label, key, nd in [("deliveries/s", "dps", 0), ("events published/s", "pub_per_s", 0),
                           ("latency p50 under load (ms)", "p50", 2), ("latency p99 under load (ms)", "p99", 2),
                           ("server CPU-s per 1M deliveries", "cpu_per_m", 3), ("server RSS at end (MB)", "rss_mb", 1)]:
        row = [label] + [fmt(c.get(key), nd) for _, c in cols]
        for other in (cols[1][1], cols[2][1]):
            r = ratio(other.get(key), cols[0][1].get(key))
            row.append(fmt(r, 2) + "×" if r is not None else "—")
        L.append("| " + " | ".join(row) + " |")
    rounds = [" / ".join(fmt(x["dps"], 0) + ("" if x["ok"] else " ✗") for x in by.get((scen, v), {}).get("rounds") or [])
              or "—" for v in VARIANTS]
    L.append("| deliveries/s, every round (best shown) | %s | | |" % " | ".join(rounds))
    L.append("| correctness | %s | | |" % " | ".join(
        correctness(by[(scen, v)]) if (scen, v) in by else "not run" for v in VARIANTS))
    L.append("")
