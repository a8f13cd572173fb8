#!/usr/bin/env python3
"""MicroSSE in a real headless Chromium: the demo page, the hub page, reconnect and resume, CORS,
microsse.js (one stream shared by several tabs, gap and expiry callbacks), and ten streams on one
origin through the shipped nginx.conf over HTTP/2 against six directly over HTTP/1.1.

Run through Tests/browser/run.sh; Selenium drives Chromium through chromedriver (browser.py).
Every wait polls the page (or the processes) with a deadline; nothing sleeps a fixed time to let
something happen. Prints `browser: N passed, M failed`. Optional: MICROSSE_BIN=path (default
.build/debug/microsse), BROWSER_TESTS=name,name to run some.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.error
import urllib.request
import time
import traceback

from browser import Browser
from deploy_nginx import Nginx
from mercure import test_mercure_cookie_private, test_mercure_helper
from support import ROOT, Microsse, Proxy, StaticSite, free_port, http_get, kill_all, publish, response_head, wait_until

INDEX = os.path.join(ROOT, "Examples", "web", "index.html")
HELPER_JS = os.path.join(ROOT, "Examples", "web", "microsse.js")
# Screenshots go to .build-browser/screenshots/ (git-ignored); UPDATE_SCREENSHOTS=1 writes them to
# docs/ instead, where the README's and docs/BROWSER.md's copies live (ids and times differ on every run).
SHOTS = os.path.join(ROOT, "docs") if os.environ.get("UPDATE_SCREENSHOTS") == "1" else os.path.join(ROOT, ".build-browser", "screenshots")
SCREENSHOT = os.path.join(SHOTS, "screenshot-hub.png")

# Injected before any page script runs: timestamps of every list item the page adds.
ARRIVALS = """
window.__arrivals = [];
new MutationObserver(function (records) {
  records.forEach(function (r) {
    r.addedNodes.forEach(function (n) {
      if (n.tagName === "LI") window.__arrivals.push({ t: performance.now(), text: n.textContent });
    });
  });
}).observe(document, { childList: true, subtree: true });
"""


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def received(page):
    """What the hub page received, in arrival order: [{id, type, data}]."""
    return page.js("window.microsse.received")


def dom_ids(page):
    """Event ids shown in the page's list, oldest first (the list shows newest first)."""
    return page.js("[...document.querySelectorAll('#events li.event')].map(li => li.dataset.id).reverse()")


def state(page):
    return page.js("document.getElementById('state').textContent")


def wait_state(page, want, timeout=10):
    page.wait_js(f"document.getElementById('state').textContent === {want!r}", timeout, f"page state {want!r}")


def wait_count(page, n, timeout=10):
    try:
        page.wait_js(f"window.microsse.received.length >= {n}", timeout, f"{n} events on the page")
    except AssertionError as e:
        raise AssertionError(f"{e}; the page has {received(page)}") from None


# --------------------------------------------------------------------------------------------
# 0. The page the binary serves is Examples/web/index.html.


def test_page_source(t):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "Examples", "web", "generate-swift.py"), "--check"], capture_output=True)
    check(r.returncode == 0, "Sources/microsse/WebPage.swift is not generated from Examples/web/index.html: " + r.stderr.decode())
    hub = t.hub("--web")
    status, headers, body = http_get(hub.base + "/")
    check(status == 200, f"GET / on serve --web: {status}")
    check(headers.get("Content-Type", "").startswith("text/html"), f"GET / content type {headers.get('Content-Type')}")
    with open(INDEX, "rb") as f:
        want = f.read()
    check(body == want, f"GET / is not Examples/web/index.html ({len(body)} vs {len(want)} bytes): rebuild with `swift build`")
    status, headers, body = http_get(hub.base + "/microsse.js")
    check(status == 200, f"GET /microsse.js: {status}")
    check(headers.get("Content-Type") == "text/javascript; charset=utf-8", f"GET /microsse.js content type {headers.get('Content-Type')}")
    with open(HELPER_JS, "rb") as f:
        want = f.read()
    check(body == want, f"GET /microsse.js is not Examples/web/microsse.js ({len(body)} vs {len(want)} bytes): rebuild with `swift build`")


# --------------------------------------------------------------------------------------------
# 1. The classic clock demo.


def test_demo_page(t):
    demo = t.proc("demo", "--interval", "1")
    page = t.page()
    page.add_init_script(ARRIVALS)
    page.goto(demo.base + "/")
    page.wait_js("document.getElementById('state').textContent === 'open'", 10, "the open listener to fire")
    page.wait_js("document.querySelectorAll('#messages li').length >= 4", 10, "4 clock events")
    arrivals = page.js("window.__arrivals.filter(a => a.text.includes('new server event'))")
    texts = [a["text"] for a in arrivals]
    ids = [int(x.split(":", 1)[0]) for x in texts]
    check(ids[:4] == [1, 2, 3, 4], f"clock ids should count 1, 2, 3, 4: {texts}")
    gaps = [(b["t"] - a["t"]) / 1000 for a, b in zip(arrivals[1:3], arrivals[2:4])]
    # The first event comes at once and the second at the next tick; after that, one per second.
    check(all(0.6 <= g <= 1.6 for g in gaps), f"clock events should come about once a second: {gaps}")
    check(arrivals[0]["t"] < 3000, f"the first event should come at once, came at {arrivals[0]['t']:.0f} ms")

    talk = [p for m, p in page.events("Network.requestWillBeSent") if p["request"]["url"].endswith("/talk")]
    check(talk, "no request to /talk seen")
    check(talk[0]["request"]["headers"].get("Accept") == "text/event-stream", f"EventSource Accept header: {talk[0]['request']['headers']}")
    page.click("#stop")
    page.wait_js("document.getElementById('state').textContent === 'stopped' && source.readyState === EventSource.CLOSED", 5, "Stop Listening to close the source")
    request_id = talk[-1]["requestId"]
    wait_until(lambda: [p for m, p in page.events("Network.loadingFailed") if p["requestId"] == request_id], 5, "the /talk stream to be cancelled by the browser")
    count = page.js("document.querySelectorAll('#messages li').length")
    # Nothing to wait for here but time: two more ticks must pass with no new event.
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline:
        check(page.js("document.querySelectorAll('#messages li').length") == count, "an event arrived after Stop Listening")
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# 2. The hub page on one channel; events published with curl and from the page's form.


def test_hub_page(t):
    hub = t.hub("--web")
    page = t.page()
    page.goto(hub.base + "/?channel=news")
    wait_state(page, "open")
    check(page.js("document.getElementById('channels').textContent") == "news", "channel shown")
    payloads = [
        "Deploy #418 finished in 42 s",
        '{"user":"ada","action":"login"}',
        "two\nlines",
        " leading space kept",
        "ünïcødé ✓ €",
    ]
    ids = [publish(hub.base, "news", p) for p in payloads]
    wait_count(page, len(payloads))
    got = received(page)
    check([e["id"] for e in got] == ids, f"ids in publish order: {got} vs {ids}")
    check([e["data"] for e in got] == payloads, f"data in publish order: {[e['data'] for e in got]}")
    check(dom_ids(page) == ids, f"the list shows every event once, in order: {dom_ids(page)}")
    check(page.js("document.getElementById('last-id').textContent") == ids[-1], "last event id shown")
    check(publish(hub.base, "other", "not for this page") and True, "publish to another channel")

    # The form publishes to the hub (same origin) with an event type the page then listens for.
    page.type_into("#pub-event", "deploy")
    page.type_into("#pub-data", "Published from the page's form")
    page.click("#pub-send")
    page.wait_js("document.getElementById('publish-result').className === 'ok'", 5, "the form to publish")
    wait_count(page, len(payloads) + 1)
    last = received(page)[-1]
    check(last["type"] == "deploy" and last["data"] == "Published from the page's form", f"form event: {last}")
    result = page.js("document.getElementById('publish-result').textContent")
    check(last["id"] in result, f"the form shows the id it got: {result!r} vs {last['id']}")
    check(len(received(page)) == len(payloads) + 1, "the other channel's event must not show")
    check(not page.console_errors(), f"page errors: {page.console_errors()}")

    publish(hub.base, "news", '{"price": 101.25, "symbol": "MSSE"}')
    wait_count(page, len(payloads) + 2)
    page.js("document.getElementById('pub-data').value = 'Hello from the browser'; document.getElementById('pub-event').value = ''")
    page.wait_js("!document.querySelector('#events li.fresh') || document.getAnimations().length === 0", 5, "animations to settle")
    page.js("window.scrollTo(0, 0)")
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    page.screenshot(SCREENSHOT, 1280, 860)
    check(os.path.getsize(SCREENSHOT) > 10000, "screenshot written")


# --------------------------------------------------------------------------------------------
# 3. Resilience: the connection is cut, or the hub restarts, while events keep being published.


class Publisher:
    """Publishes events to one channel from a thread until told to stop; records the ids."""

    def __init__(self, base, channel, every=0.03):
        self.base, self.channel, self.every = base, channel, every
        self.ids, self.failures, self.n = [], 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.n += 1
            try:
                self.ids.append(publish(self.base, self.channel, f"event {self.n}", use_curl=False))
            except Exception:
                self.failures += 1
                self.n -= 1
            self._stop.wait(self.every)

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        return list(self.ids)


def test_reconnect_resumes_without_loss(t):
    hub = t.hub("--web", "--retry", "200")
    proxy = t.proxy(hub.port)
    page = t.page()
    page.goto(proxy.base + "/?channel=resilient")
    wait_state(page, "open")
    pub = Publisher(hub.base, "resilient")
    wait_count(page, 10)
    before = len(pub.ids)
    proxy.down = True
    cut_at = time.monotonic()
    check(proxy.sever() >= 1, "the stream went through the proxy")
    wait_state(page, "reconnecting", 5)
    last_seen = received(page)[-1]["id"]
    # Stay down until the browser has tried again at least once and more events were published.
    wait_until(lambda: proxy.refused >= 1 and len(pub.ids) >= before + 15, 10, "a refused reconnect while events are published")
    proxy.down = False
    # The hub's retry: 200 is what the browser waits (its own default is 3 s).
    first_retry = proxy.refused_at[0] - cut_at
    check(0.1 <= first_retry < 1.5, f"the browser retried after the hub's retry: (200 ms), took {first_retry:.2f}s")
    wait_state(page, "open", 5)
    wait_until(lambda: len(pub.ids) >= before + 30, 10, "more events after the reconnect")
    ids = pub.stop()
    wait_count(page, len(ids))
    got = [e["id"] for e in received(page)]
    check(got == ids, f"every event exactly once, in order:\n  page {got}\n  hub  {ids}")
    check(dom_ids(page) == ids, "the list matches")
    streams = proxy.stream_requests("/events/resilient")
    check(len(streams) >= 2, f"the browser reconnected by itself: {streams}")
    check("last-event-id" not in streams[0], "the first connection has no Last-Event-ID")
    check(streams[1].get("last-event-id") == last_seen, f"the reconnect sent Last-Event-ID {last_seen}: {streams[1]}")
    check(page.js("window.microsse.gaps.length") == 0, "no gap reported when history covers the outage")
    check(page.js("document.getElementById('gap').classList.contains('shown')") is False, "no gap banner")
    check(page.js("document.getElementById('reconnects').textContent") != "0", "reconnects counted")


def test_short_history_shows_gap(t):
    hub = t.hub("--web", "--retry", "200", "--history", "2")
    proxy = t.proxy(hub.port)
    page = t.page()
    page.goto(proxy.base + "/?channel=short")
    wait_state(page, "open")
    first = [publish(hub.base, "short", f"before {i}") for i in range(3)]
    wait_count(page, 3)
    proxy.down = True
    proxy.sever()
    wait_state(page, "reconnecting", 5)
    missed = [publish(hub.base, "short", f"during {i}") for i in range(5)]
    proxy.down = False
    page.wait_js("window.microsse.gaps.length === 1", 10, "the gap event")
    wait_count(page, 5)
    gap = page.js("window.microsse.gaps[0]")
    check(gap == {"lastEventId": first[-1], "reason": "evicted"}, f"gap payload: {gap}")
    got = [e["id"] for e in received(page)]
    check(got == first + missed[-2:], f"the events the hub still had follow, none twice:\n  page {got}\n  want {first + missed[-2:]}")
    banner = page.js("document.getElementById('gap').innerText")
    check(page.js("getComputedStyle(document.getElementById('gap')).display") != "none", "the gap banner is visible")
    check(first[-1] in banner and "evicted" in banner, f"the banner names the id and the reason: {banner!r}")
    check(page.js("document.querySelectorAll('#events li.gapmark').length") == 1, "one gap marker in the list")
    # The marker sits between the last event before the outage and the first replayed one.
    order = page.js("[...document.querySelectorAll('#events li')].reverse().map(li => li.classList.contains('gapmark') ? 'GAP' : li.dataset.id)")
    check(order == first + ["GAP"] + missed[-2:], f"marker position: {order}")
    later = publish(hub.base, "short", "after")
    wait_count(page, 6)
    check(received(page)[-1]["id"] == later, "live events go on after the gap")
    page.wait_js("document.getAnimations().length === 0", 5, "animations to settle")
    page.screenshot(os.path.join(SHOTS, "screenshot-gap.png"), 1280, 760)


def test_hub_restart_shows_gap(t):
    port = free_port()
    hub = t.hub("--web", "--retry", "200", port=port)
    page = t.page()
    page.goto(hub.base + "/?channel=restart")
    wait_state(page, "open")
    pub = Publisher(hub.base, "restart")
    wait_count(page, 5)
    hub.kill(signal.SIGKILL)
    wait_state(page, "reconnecting", 5)
    before_restart = list(pub.ids)
    last_seen = received(page)[-1]["id"]
    check(last_seen == before_restart[-1], f"the page had every event up to the crash: {last_seen} vs {before_restart[-1]}")
    # Publishing goes on (and fails) while the hub is down; then it comes back on the same port.
    wait_until(lambda: pub.failures >= 3, 5, "publishes to fail while the hub is down")
    hub2 = t.hub("--web", "--retry", "200", port=port)
    wait_state(page, "open", 10)
    page.wait_js("window.microsse.gaps.length === 1", 10, "the gap event after the restart")
    n = len(received(page))
    wait_until(lambda: len(received(page)) >= n + 5, 10, "live events after the restart")
    ids = pub.stop()
    wait_count(page, len(ids))
    gap = page.js("window.microsse.gaps[0]")
    check(gap["lastEventId"] == last_seen and gap["reason"] in ("unknown", "evicted"), f"gap payload: {gap}")
    got = [e["id"] for e in received(page)]
    check(got == ids, f"every event published once, in order (the restarted hub assigns new ids):\n  page {got}\n  hub  {ids}")
    check(len(set(got)) == len(got), "no duplicate ids")
    # Last-Event-ID is added by the network stack: requestWillBeSentExtraInfo has the headers sent.
    stream_ids = {p["requestId"] for m, p in page.events("Network.requestWillBeSent") if "/events/restart" in p["request"]["url"]}
    sent = [
        {k.lower(): v for k, v in p["headers"].items()}.get("last-event-id")
        for m, p in page.events("Network.requestWillBeSentExtraInfo") if p["requestId"] in stream_ids
    ]
    check(last_seen in sent, f"the browser sent Last-Event-ID {last_seen}: {sent}")
    gap_headers = [
        {k.lower(): v for k, v in p["response"]["headers"].items()}.get("microsse-gap")
        for m, p in page.events("Network.responseReceived") if "/events/restart" in p["response"]["url"]
    ]
    check(gap["reason"] in gap_headers, f"the resumed response has header MicroSSE-Gap: {gap_headers}")
    check(page.js("getComputedStyle(document.getElementById('gap')).display") != "none", "the gap banner is visible")
    hub2.kill(signal.SIGTERM)
    check(hub2.proc.returncode == 0, f"SIGTERM stops the hub cleanly: exit {hub2.proc.returncode}")


# --------------------------------------------------------------------------------------------
# 4. Several channels on one stream; cross-origin pages allowed and refused.


def test_multi_channel(t):
    hub = t.hub("--web")
    page = t.page()
    page.goto(hub.base + "/?channel=alpha&channel=beta")
    wait_state(page, "open")
    streams = [p["request"]["url"] for m, p in page.events("Network.requestWillBeSent") if "/events" in p["request"]["url"]]
    check(streams and streams[0].endswith("/events?channel=alpha&channel=beta"), f"one stream for both channels: {streams}")
    want = []
    for i in range(4):
        for ch in ("alpha", "beta", "gamma"):
            eid = publish(hub.base, ch, f"{ch} {i}")
            if ch != "gamma":
                want.append((eid, f"{ch} {i}"))
    wait_count(page, len(want))
    got = [(e["id"], e["data"]) for e in received(page)]
    check(got == want, f"alpha and beta interleaved in publish order, no gamma:\n  page {got}\n  want {want}")
    # One id places a client in both channels: a second EventSource resuming with the lastEventId
    # query parameter (for clients that cannot set headers) gets exactly what followed, in order.
    page.js(
        "window.__resumed = []; window.__second = new EventSource('/events?channel=alpha&channel=beta&lastEventId=' + "
        + repr(want[2][0]) + "); __second.onmessage = e => __resumed.push([e.lastEventId, e.data]);"
    )
    page.wait_js(f"window.__resumed.length >= {len(want) - 3}", 10, "the resumed stream to catch up")
    resumed = [tuple(x) for x in page.js("window.__resumed")]
    check(resumed == want[3:], f"resume of both channels from one id:\n  got  {resumed}\n  want {want[3:]}")
    page.js("__second.close()")


def test_cross_origin(t):
    web_dir = os.path.dirname(INDEX)
    allowed = t.site(web_dir)
    refused = t.site(web_dir)
    hub = t.hub("--cors-origin", allowed.origin, "--publish-token", "s3cret", "--retry", "200")
    proxy = t.proxy(hub.port)  # the page talks to the hub through it, so the test can cut it

    ok = t.page()
    ok.goto(f"{allowed.origin}/index.html?channel=cors&hub={proxy.base}")
    wait_state(ok, "open")
    ids = [publish(hub.base, "cors", f"cross-origin {i}", token="s3cret") for i in range(3)]
    wait_count(ok, 3)
    check([e["id"] for e in received(ok)] == ids, "the allowed origin receives the events")

    # Cross-origin publishing from the page: without the token the page reads the 401; with it
    # (Authorization makes the browser send a CORS preflight) the event is published.
    ok.type_into("#pub-data", "posted from another origin")
    ok.click("#pub-send")
    ok.wait_js("/^(ok|err)$/.test(document.getElementById('publish-result').className)", 5, "the publish without token to finish")
    result = ok.js("document.getElementById('publish-result').textContent")
    check("401" in result, f"a publish without the token is refused, and the page can read why: {result!r}")
    ok.type_into("#pub-token", "s3cret")
    ok.click("#pub-send")
    ok.wait_js("document.getElementById('publish-result').className === 'ok'", 5, "the cross-origin publish with the token")
    wait_count(ok, 4)
    ids.append(received(ok)[-1]["id"])
    check(received(ok)[-1]["data"] == "posted from another origin", f"cross-origin publish: {received(ok)[-1]}")
    preflights = [h for h in proxy.requests if h.startswith("OPTIONS ")]
    check(preflights, "the token publish went through a CORS preflight")

    # Cross-origin resume: cut the stream, publish while it is down, the page catches up.
    proxy.down = True
    proxy.sever()
    wait_state(ok, "reconnecting", 5)
    ids += [publish(hub.base, "cors", f"while cut {i}", token="s3cret") for i in range(3)]
    proxy.down = False
    wait_count(ok, len(ids))
    check([e["id"] for e in received(ok)] == ids, f"cross-origin resume without loss: {received(ok)} vs {ids}")
    streams = proxy.stream_requests("/events/cors")
    check(streams[-1].get("last-event-id") == ids[3] and streams[-1].get("origin") == allowed.origin,
          f"the cross-origin reconnect carries Origin and Last-Event-ID: {streams[-1]}")

    bad = t.page()
    bad.goto(f"{refused.origin}/index.html?channel=cors&hub={hub.base}")
    wait_state(bad, "closed", 10)
    ids.append(publish(hub.base, "cors", "not for refused origins", token="s3cret"))
    wait_count(ok, len(ids))
    check(bad.js("window.microsse.opened") == 0 and received(bad) == [], "a refused origin never opens nor receives")
    failed = [p for m, p in bad.events("Network.loadingFailed") if p.get("corsErrorStatus") or "CORS" in p.get("errorText", "") or p.get("blockedReason")]
    check(failed, f"the browser blocked the stream for CORS: {bad.events('Network.loadingFailed')}")
    # What the browser got: the stream without Access-Control-Allow-Origin for the refused origin.
    hdr = {"Origin": refused.origin, "Accept": "text/event-stream"}
    status, headers = response_head(hub.port, "/events/cors", hdr)
    check("access-control-allow-origin" not in headers, f"no CORS header for a refused origin: {status} {headers}")
    status, headers = response_head(hub.port, "/events/cors", dict(hdr, Origin=allowed.origin))
    check(headers.get("access-control-allow-origin") == allowed.origin, f"the allowed origin's header: {status} {headers}")
    # microsse.js is a module script, fetched with CORS: an allowed origin can import it from the
    # hub (served without --web too), a refused one cannot.
    load = f"import({hub.base + '/microsse.js'!r}).then((m) => typeof m.MicroSSE, () => 'refused')"
    check(ok.js(load) == "function", "an allowed origin imports microsse.js from the hub")
    check(bad.js(load) == "refused", "a refused origin cannot import microsse.js")


# --------------------------------------------------------------------------------------------
# 5. microsse.js: one stream shared by the tabs of an origin, gap and expiry callbacks.

# Loads /microsse.js from the hub (the page is on the hub's origin) and opens a MicroSSE whose
# callbacks record into window.__sse. %s is the options object (JavaScript).
HELPER = """
(async () => {
  const { MicroSSE } = await import("/microsse.js");
  const log = window.__sse = { events: [], gaps: [], expired: [], typed: [] };
  const options = Object.assign({
    onEvent: (e) => log.events.push([e.lastEventId, e.type, e.data]),
    onGap: (gap) => log.gaps.push(gap),
    onExpired: (info) => log.expired.push(info),
  }, %s);
  window.__stream = new MicroSSE(%s, options);
  return __stream.role;
})()
"""


def start_helper(page, base, path, options="{}"):
    """A tab on the hub's origin (its /healthz: a page that opens no stream) running microsse.js."""
    page.goto(base + "/healthz")
    return page.js(HELPER % (options, repr(path)))


def helper_events(page):
    return [tuple(e) for e in page.js("window.__sse.events")]


def hub_clients(hub):
    status, _, body = http_get(hub.base + "/stats")
    check(status == 200, f"GET /stats: {status}")
    return json.loads(body)["clients"]


def wait_clients(hub, n, timeout=10):
    try:
        wait_until(lambda: hub_clients(hub) == n, timeout, f"{n} stream(s) open on the hub")
    except AssertionError as e:
        raise AssertionError(f"{e}; the hub has {hub_clients(hub)}") from None


def wait_helper_events(pages, want, timeout=10):
    for p in pages:
        try:
            wait_until(lambda: len(p.js("window.__sse.events")) >= len(want), timeout, f"{len(want)} events in every tab")
        except AssertionError as e:
            raise AssertionError(f"{e}; tab {p.handle} has {helper_events(p)}") from None
        got = helper_events(p)
        check(got == want, f"every event once, in order, in tab {p.handle}:\n  tab  {got}\n  want {want}")


def test_helper_shares_one_stream(t):
    hub = t.hub("--web", "--retry", "200")
    proxy = t.proxy(hub.port)  # the tabs' origin: the test can make the hub unreachable to them
    tabs = [t.page() for _ in range(3)]
    for p in tabs:
        start_helper(p, proxy.base, "/events/shared", "{events: ['price']}")

    def leaders(pages):
        return [p for p in pages if p.js("__stream.role") == "leader"]

    wait_until(lambda: len(leaders(tabs)) == 1 and leaders(tabs)[0].js("__stream.state") == "open", 10, "one leader tab with an open stream")
    leader = leaders(tabs)[0]
    followers = [p for p in tabs if p is not leader]
    check([p.js("__stream.role") for p in followers] == ["follower", "follower"], "the other tabs follow")
    wait_clients(hub, 1)
    streams = [p for p in tabs if [e for m, e in p.events("Network.requestWillBeSent") if "/events/shared" in e["request"]["url"]]]
    check(streams == [leader], f"only the leader opened a stream: {[p.handle for p in streams]}")
    # A follower listens for one more type: the leader is told and rebroadcasts it to every tab.
    followers[0].js("__stream.addEventListener('deploy', (e) => __sse.typed.push([e.lastEventId, e.data]))")
    wait_until(lambda: leader.js("__stream._listening.has('deploy')"), 5, "the leader to listen for the follower's type")

    want = []
    for i in range(4):
        want.append((publish(hub.base, "shared", f"event {i}"), "message", f"event {i}"))
    want.append((publish(hub.base, "shared", "101.25", event="price"), "price", "101.25"))
    want.append((publish(hub.base, "shared", "v2", event="deploy"), "deploy", "v2"))
    want.append((publish(hub.base, "shared", "multi\nline ünïcødé"), "message", "multi\nline ünïcødé"))
    wait_helper_events(tabs, want)
    check(followers[0].js("__sse.typed") == [[want[5][0], "v2"]], "addEventListener gets its type")
    check(all(p.js("__stream.lastEventId") == want[-1][0] for p in tabs), "every tab knows the last id")

    # The leader tab closes while events keep coming, and the new leader's request is held
    # until more events are published, so events surely fall between the two streams: the new
    # leader resumes from the last id its tab saw and every tab still gets every event.
    last_seen = want[-1][0]
    proxy.holding = True
    proxy.sever()  # idle keep-alive connections too: the new leader needs a new one
    pub = Publisher(hub.base, "shared")
    leader.close()
    wait_until(lambda: proxy.held >= 1 and len(pub.ids) >= 10, 10, "the new leader's request held while events are published")
    proxy.release()
    wait_until(lambda: len(leaders(followers)) == 1 and leaders(followers)[0].js("__stream.state") == "open", 10, "a new leader with an open stream")
    new_leader = leaders(followers)[0]
    wait_until(lambda: len(pub.ids) >= 25, 10, "events published after the takeover")
    wait_clients(hub, 1)
    ids = pub.stop()
    want += [(i, "message", f"event {n + 1}") for n, i in enumerate(ids)]
    wait_helper_events(followers, want)
    resumed = [e["request"]["url"] for m, e in new_leader.events("Network.requestWillBeSent") if "/events/shared" in e["request"]["url"]]
    check(resumed and urllib.parse.unquote(resumed[0]).endswith(f"/events/shared?lastEventId={last_seen}"), f"the new leader resumed from {last_seen}: {resumed}")
    check(all(p.js("__sse.gaps.length") == 0 for p in followers), "no gap: the hub had every missed event")
    for p in followers:
        check(not p.console_errors(), f"page errors: {p.console_errors()}")


def test_helper_channels_share_ids(t):
    hub = t.hub("--web")
    tabs = [t.page() for _ in range(2)]
    path = "/events?channel=a&channel=b"
    for p in tabs:
        start_helper(p, hub.base, path)
    alone = t.page()
    start_helper(alone, hub.base, path, "{shared: false}")
    wait_until(lambda: sorted(p.js("__stream.role") for p in tabs) == ["follower", "leader"], 10, "a leader and a follower")
    wait_until(lambda: all(p.js("__stream.state") == "open" for p in tabs + [alone]), 10, "open streams")
    wait_clients(hub, 2)
    # Publishers may give their own ids (labels), and two channels may use the same ones: a
    # stream of both sees the hub's positions instead (docs/RESUME.md), one per event.
    data = []
    for eid in ("7", "8"):
        for ch in ("a", "b"):
            got = publish(hub.base, f"{ch}?id={eid}", f"{ch} {eid}")
            check(got == eid, f"the hub kept the publisher's id: {got}")
            data.append(f"{ch} {eid}")
    assigned = publish(hub.base, "a", "a assigned")
    data.append("a assigned")
    wait_until(lambda: all(len(helper_events(p)) >= len(data) for p in tabs + [alone]), 10, "every event in every tab")
    want = helper_events(alone)
    check([e[2] for e in want] == data, f"every event once, in order: {want}")
    ids = [e[0] for e in want]
    check(all(i.startswith("~1.") for i in ids) and len(set(ids)) == len(ids) and ids[-1] == assigned,
          f"positions on a stream of two channels: {ids}")
    for p in tabs:
        check(helper_events(p) == want, f"the same in tab {p}: {helper_events(p)}")
    # A tab ahead of a new leader that resumes from b 7's position: the replay brings a 8, b 8
    # and the assigned one again, which this tab drops by position, then a new event it delivers.
    # (Told the way a new leader tells it; the tab's role does not matter for this.)
    replay = [[want[2][0], "a 8"], [want[3][0], "b 8"], [want[4][0], "a assigned"], ["9", "new"]]
    alone.js(
        "const s = __stream; s._onMessage({k: 'resume', lastEventId: %s});" % json.dumps(want[1][0])
        + "for (const [id, data] of %s)" % json.dumps(replay)
        + "  s._onMessage({k: 'event', event: {type: 'message', data, lastEventId: id}});"
    )
    check(helper_events(alone) == want + [("9", "message", "new")], f"only the new event after the replay: {helper_events(alone)}")
    for p in tabs + [alone]:
        check(not p.console_errors(), f"page errors: {p.console_errors()}")


def publish_status(base, channel, data, event):
    """POSTs one event; returns the status (an error status too, where publish() raises)."""
    req = urllib.request.Request(f"{base}/events/{channel}?event={event}", data=data.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_helper_gap_and_expired(t):
    hub = t.hub("--web", "--history", "2")
    old = [publish(hub.base, "gappy", f"old {i}") for i in range(5)]
    a, b = t.page(), t.page()
    for p in (a, b):
        p.goto(hub.base + "/healthz")
    # The test holds the tabs' lock until both helpers wait for it, so both see the leader's
    # first events, the gap included, whichever tab leads.
    a.js("navigator.locks.request('gap-test', () => new Promise((r) => { window.__unlock = r; })); true")
    a.wait_js("typeof window.__unlock === 'function'", 5, "the test to hold the lock")
    for p in (a, b):
        role = p.js(HELPER % (f"{{name: 'gap-test', lastEventId: {old[0]!r}}}", repr("/events/gappy")))
        check(role == "follower", f"a helper waits for the lock: {role}")
    a.js("__unlock()")
    want = [(old[3], "message", "old 3"), (old[4], "message", "old 4")]
    wait_helper_events([a, b], want)
    for p in (a, b):
        check(p.js("__sse.gaps") == [{"lastEventId": old[0], "reason": "evicted"}], f"onGap in every tab: {p.js('__sse.gaps')}")
    check(sorted([a.js("__stream.role"), b.js("__stream.role")]) == ["follower", "leader"], "one leader")
    wait_clients(hub, 1)

    # {shared: false}: a stream of this tab's own, with its own gap.
    b.js(
        "window.__single = {events: [], gaps: []}; window.__own = new __stream.constructor('/events/gappy', {shared: false, lastEventId: "
        + repr(old[1]) + ", onEvent: (e) => __single.events.push(e.lastEventId), onGap: (g) => __single.gaps.push(g)});"
    )
    check(b.js("__own.role") == "single", "shared: false is a plain EventSource")
    b.wait_js("__single.events.length >= 2", 10, "the single stream's replay")
    check(b.js("__single.gaps") == [{"lastEventId": old[1], "reason": "evicted"}], f"the single stream's gap: {b.js('__single.gaps')}")
    check(b.js("__single.events") == [old[3], old[4]], f"the single stream's replay: {b.js('__single.events')}")
    wait_clients(hub, 2)
    live = publish(hub.base, "gappy", "live")
    want.append((live, "message", "live"))
    wait_helper_events([a, b], want)
    b.wait_js(f"__single.events.includes({live!r})", 5, "the live event on the single stream")

    # microsse.expired: what the hub sends before ending a stream whose token expired (a publisher
    # cannot send it: the name is reserved). A hub with tokens; the cookie's token lapses while
    # both tabs share one stream: onExpired in every tab, and every stream closes.
    check(publish_status(hub.base, "gappy", "{}", event="microsse.expired") == 400, "a publisher cannot send microsse.expired")
    hub2 = t.hub("--web", "--jwt-secret", JWT_SECRET, "--publish-token", "browser-suite-publish")
    exp = int(time.time()) + 6
    token = jwt_hs256({"sub": "tab", "exp": exp, "microsse": {"subscribe": ["expiring"]}})
    for p in (a, b):
        p.goto(hub2.base + "/healthz")
    a.driver.add_cookie({"name": "microsseAuthorization", "value": token, "path": "/", "httpOnly": True, "sameSite": "Strict"})
    for p in (a, b):
        p.js(HELPER % ("{name: 'expiry-test'}", repr("/events/expiring")))
    wait_clients(hub2, 1)
    for p in (a, b):
        p.wait_js("__sse.expired.length === 1 && __stream.state === 'closed'", 15, "onExpired and the stream closed")
        check(p.js("__sse.expired") == [{"exp": exp}], f"onExpired payload: {p.js('__sse.expired')}")
        check(helper_events(p) == [], "microsse.expired is not an ordinary event")
    check(time.time() >= exp, "not before exp")
    wait_clients(hub2, 0)


# --------------------------------------------------------------------------------------------
# 5b. JWT: an HttpOnly cookie authorizes a plain EventSource on the hub's own origin.

JWT_SECRET = "browser-suite-jwt-secret-0123456789abcdef"


def jwt_hs256(claims, secret=JWT_SECRET):
    """A compact HS256 token with these claims (what a backend mints; stdlib only)."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


# Two EventSources with credentials: the user's own channel and another user's.
JWT_STREAMS = """
function watch(url) {
  const s = { opened: 0, errors: 0, events: [], expired: [], states: [] };
  s.es = new EventSource(url, { withCredentials: true });
  s.es.onopen = () => { s.opened++; };
  s.es.onmessage = (e) => s.events.push(e.data);
  s.es.addEventListener("microsse.expired", (e) => s.expired.push(JSON.parse(e.data)));
  s.es.onerror = () => { s.errors++; s.states.push(s.es.readyState); };
  return s;
}
window.__own = watch("/events/user.alice.inbox");
window.__other = watch("/events/user.bob.inbox");
true
"""


def hub_log(hub):
    with hub._cond:
        return "\n".join(hub.lines)


def test_jwt_cookie(t):
    publisher = "browser-suite-static-publish-token"
    hub = t.hub("--jwt-secret", JWT_SECRET, "--publish-token", publisher, "--retry", "300", "--log-level", "debug")
    page = t.page()
    page.goto(hub.base + "/healthz")
    exp = int(time.time()) + 5
    token = jwt_hs256({"sub": "alice", "exp": exp, "microsse": {"subscribe": ["user.alice.*"]}})
    # The backend's Set-Cookie, as the browser keeps it: HttpOnly, so page scripts cannot read it.
    page.driver.add_cookie({"name": "microsseAuthorization", "value": token, "path": "/", "httpOnly": True, "sameSite": "Strict"})
    check(page.js("document.cookie") == "", f"the cookie is HttpOnly: {page.js('document.cookie')!r}")
    page.js(JWT_STREAMS)
    page.wait_js("__own.opened === 1", 5, "alice's stream to open with the cookie")
    wait_clients(hub, 1)

    # Another user's channel: 403, which an EventSource reports as an error and never retries.
    page.wait_js("__other.es.readyState === 2", 5, "bob's channel to fail")
    check(page.js("__other.opened") == 0, "bob's channel never opened")
    wait_until(lambda: "403 token does not grant subscribing to channel user.bob.inbox" in hub_log(hub), 5, "the hub to log the 403")

    publish(hub.base, "user.alice.inbox", "hello alice", token=publisher)
    publish(hub.base, "user.bob.inbox", "hello bob", token=publisher)
    page.wait_js("__own.events.length === 1", 5, "alice's event")
    check(page.js("__own.events") == ["hello alice"], f"alice's events: {page.js('__own.events')}")
    check(page.js("__own.expired") == [], "no expiry yet")

    # The token lapses: microsse.expired with its exp, then the stream ends; the EventSource
    # reconnects with the same (now expired) cookie, gets 401 and gives up.
    page.wait_js("__own.expired.length === 1", 10, "microsse.expired when the cookie's token lapses")
    check(page.js("__own.expired") == [{"exp": exp}], f"microsse.expired data: {page.js('__own.expired')}")
    check(time.time() >= exp, "not before exp (exact, no leeway mid-stream)")
    page.wait_js("__own.es.readyState === 2", 10, "the reconnect with the expired token to be refused")
    check(page.js("__own.events") == ["hello alice"], "nothing else arrived")
    wait_until(lambda: "401 token expired" in hub_log(hub), 5, "the hub to log the refused reconnect")
    wait_clients(hub, 0)
    check(token not in hub_log(hub), "the token never appears in the hub's log")


# --------------------------------------------------------------------------------------------
# 6. More than six streams per origin: HTTP/2 through the shipped nginx config, HTTP/1.1 capped.

# Ten EventSources on the page's origin, one per channel c0..c9, recording opens and events.
TEN = """
window.__ten = [];
for (let i = 0; i < 10; i++) {
  const s = { channel: "c" + i, opened: false, events: [] };
  s.es = new EventSource("/events/c" + i);
  s.es.onopen = () => { s.opened = true; };
  s.es.onmessage = (e) => s.events.push(e.data);
  __ten.push(s);
}
true
"""
TEN_STATE = "__ten.map(s => ({channel: s.channel, state: s.es.readyState, opened: s.opened, events: s.events}))"


def open_ten(page, base):
    """Loads the origin's /healthz (a page that opens no stream) and opens the ten EventSources there."""
    page.goto(base + "/healthz")
    page.js(TEN)


def stream_responses(page):
    """Network.responseReceived of the tab's /events/cN requests: {channel: response}."""
    out = {}
    for _, p in page.events("Network.responseReceived"):
        url = p["response"]["url"]
        if "/events/c" in url:
            out[url.rsplit("/", 1)[1]] = p["response"]
    return out


def test_h2_proxy_ten_streams(t):
    hub = t.hub("--web")
    nginx = t.nginx(hub.port)
    channels = [f"c{i}" for i in range(10)]

    # Through nginx (https, HTTP/2): all ten streams open on one connection and each gets its event.
    page = t.page()
    # The certificate is self-signed: this tab (only; checked: a fresh tab on another such origin
    # still gets the warning page) ignores certificate errors, the DevTools counterpart of
    # Chromium's --ignore-certificate-errors. The tab is closed after this part.
    page.driver.execute_cdp_cmd("Security.setIgnoreCertificateErrors", {"ignore": True})
    open_ten(page, nginx.base)
    check(page.js("performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2", "the page came over h2")
    # The hub counts ten streams once nginx has passed the ten requests on. Over HTTP/2, nginx
    # 1.22 holds a stream's response head until the first body bytes (a heartbeat or an event):
    # the sources open when the events come, not before (over HTTP/1.1 nginx passes it at once).
    wait_clients(hub, 10)
    for c in channels:
        publish(hub.base, c, f"event for {c}", use_curl=False)
    try:
        page.wait_js("__ten.every(s => s.es.readyState === EventSource.OPEN && s.events.length >= 1)", 10, "ten EventSources open through nginx, an event on each")
    except AssertionError as e:
        raise AssertionError(f"{e}; {page.js(TEN_STATE)}; nginx: {nginx.error_log()}") from None
    got = {s["channel"]: s["events"] for s in page.js(TEN_STATE)}
    check(got == {c: [f"event for {c}"] for c in channels}, f"each stream gets its own channel's event, once: {got}")
    responses = wait_until(lambda: (lambda r: r if len(r) == 10 else None)(stream_responses(page)), 5, "ten stream responses in the performance log")
    protocols = {c: r.get("protocol") for c, r in responses.items()}
    check(set(protocols.values()) == {"h2"}, f"every stream over h2: {protocols}")
    connections = {r.get("connectionId") for r in responses.values()}
    check(len(connections) == 1, f"the ten streams share one connection: {connections}")
    # nginx's side: it logs a request when it ends, so the page closes its sources first.
    page.js("__ten.forEach(s => s.es.close()); true")
    logged = lambda: sorted(set(re.findall(r'"GET /events/(c\d) HTTP/2\.0" 200', nginx.access_log())))  # noqa: E731
    wait_until(lambda: logged() == channels, 10, "nginx to log ten HTTP/2.0 stream requests")
    page.close()
    # The hub finds a closed stream when it writes to it: events to the channels make it write.
    wait_until(lambda: [publish(hub.base, c, "closed", use_curl=False) for c in channels] and hub_clients(hub) == 0, 10, "the hub to see every stream closed")

    # Directly against the hub (http, HTTP/1.1): six connections per origin, so six streams.
    page = t.page()
    open_ten(page, hub.base)
    page.wait_js("__ten.filter(s => s.es.readyState === EventSource.OPEN).length >= 6", 10, "six EventSources open on the hub")
    wait_clients(hub, 6)
    for c in channels:
        publish(hub.base, c, f"direct {c}", use_curl=False)
    page.wait_js("__ten.filter(s => s.events.length > 0).length >= 6", 10, "an event on each of the six open streams")
    # Nothing to wait for here but time: the other four must stay connecting, with no event,
    # and the hub must keep counting six streams.
    deadline = time.monotonic() + 1.5
    while True:
        states = page.js(TEN_STATE)
        is_open = [s for s in states if s["state"] == 1]
        waiting = [s for s in states if s["state"] != 1]
        check(len(is_open) == 6, f"exactly six streams open over HTTP/1.1: {states}")
        check(all(s["events"] == [f"direct {s['channel']}"] for s in is_open), f"each open stream gets its event: {is_open}")
        check(all(s["state"] == 0 and not s["opened"] and not s["events"] for s in waiting), f"the other four stay connecting, without events: {waiting}")
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    check(hub_clients(hub) == 6, f"the hub has six streams: {hub_clients(hub)}")
    protocols = {c: r.get("protocol") for c, r in stream_responses(page).items()}
    check(sorted(protocols) == sorted(s["channel"] for s in is_open) and set(protocols.values()) == {"http/1.1"},
          f"responses only for the six open streams, over http/1.1: {protocols}")
    # Closing one open stream frees its connection: one waiting stream opens on it.
    first = is_open[0]["channel"]
    page.js(f"__ten.find(s => s.channel === {first!r}).es.close(); true")
    page.wait_js("__ten.filter(s => s.opened).length === 7", 10, "a waiting stream to open when a connection is freed")
    check(len([s for s in page.js(TEN_STATE) if s["state"] == 1]) == 6, "still six open")
    check(not page.console_errors(), f"page errors: {page.console_errors()}")


# --------------------------------------------------------------------------------------------


class TestContext:
    """What one test started: its tabs, processes, proxies and sites, all closed after it."""

    def __init__(self, browser):
        self.browser = browser
        self._cleanup = []

    def page(self):
        p = self.browser.new_page()
        self._cleanup.append(p.close)
        return p

    def proc(self, *args, port=0):
        m = Microsse(*args, port=port)
        self._cleanup.append(lambda: m.kill(signal.SIGKILL))
        return m

    def hub(self, *args, port=0):
        return self.proc("serve", "--heartbeat", "5", *args, port=port)

    def proxy(self, upstream):
        p = Proxy(upstream)
        self._cleanup.append(p.close)
        return p

    def nginx(self, hub_port):
        n = Nginx(hub_port)
        self._cleanup.append(n.close)
        return n

    def site(self, directory):
        s = StaticSite(directory)
        self._cleanup.append(s.close)
        return s

    def close(self):
        for fn in reversed(self._cleanup):
            try:
                fn()
            except Exception:
                pass


TESTS = [
    test_page_source,
    test_demo_page,
    test_hub_page,
    test_reconnect_resumes_without_loss,
    test_short_history_shows_gap,
    test_hub_restart_shows_gap,
    test_multi_channel,
    test_cross_origin,
    test_helper_shares_one_stream,
    test_helper_channels_share_ids,
    test_helper_gap_and_expired,
    test_jwt_cookie,
    test_h2_proxy_ten_streams,
    test_mercure_cookie_private,
    test_mercure_helper,
]


def main():
    def on_signal(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")

    signal.signal(signal.SIGTERM, on_signal)
    only = [n for n in os.environ.get("BROWSER_TESTS", "").split(",") if n]
    tests = [f for f in TESTS if not only or any(n in f.__name__ for n in only)]
    passed = failed = 0
    started = time.monotonic()
    browser = None
    try:
        try:
            browser = Browser()
            print(f"browser: {browser.version} (headless, fresh profile {browser.profile})", flush=True)
        except Exception as e:
            # A browser test that cannot start Chromium fails; it never skips.
            print(f"FAIL cannot start Chromium: {e}", flush=True)
            failed = len(tests)
            tests = []
        for test in tests:
            name = test.__name__[5:]
            t0 = time.monotonic()
            ctx = TestContext(browser)
            try:
                test(ctx)
                passed += 1
                print(f"ok   {name} ({time.monotonic() - t0:.1f}s)", flush=True)
            except Exception as e:
                failed += 1
                print(f"FAIL {name} ({time.monotonic() - t0:.1f}s): {e}", flush=True)
                if not isinstance(e, AssertionError):
                    traceback.print_exc()
            finally:
                ctx.close()
                kill_all()
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", flush=True)
        failed += 1
    finally:
        if browser:
            browser.close()
        kill_all()
    print(f"browser suite took {time.monotonic() - started:.1f}s", flush=True)
    print(f"browser: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
