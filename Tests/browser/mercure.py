"""Mercure in Chromium (docs/MERCURE.md): a plain EventSource with the hub's HttpOnly cookie
receives private updates its token grants and public ones, never the others (draft-08's
`__Secure-mercure_access_token`, which Chromium keeps and sends on http://127.0.0.1, a
potentially trustworthy origin); and microsse.js on a draft-07 hub (cookie
`mercureAuthorization`): `mercureURL`, one stream shared by two tabs, and a change of leader
resuming with `lastEventID`, every update once. The tests are in suite.py's TESTS.
"""

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
import urllib.request

from support import wait_until

SECRET = "browser-suite-mercure-secret-0123456789abcdef"
ISSUER = "https://app.example"
AUDIENCE = "https://hub.example/.well-known/mercure"
DETAIL = "https://mercure.rocks/authorization-detail"


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def hs256(claims, typ):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": typ} if typ else {"alg": "HS256"}).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = b64(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def token08(action, topics):
    """A draft-08 access token granting `action` on exact `topics`."""
    detail = {"type": DETAIL, "actions": [action], "topics": [{"match": t} for t in topics]}
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600, "authorization_details": [detail]}
    return hs256(claims, "at+jwt")


def mercure_publish(base, fields, token):
    """POSTs a Mercure update (form fields, a list of pairs); returns its id."""
    body = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(base + "/.well-known/mercure", data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        check(resp.status == 200, f"publish: {resp.status}")
        return resp.read().decode()


WATCH = """
const s = window.__m = { opened: 0, errors: 0, events: [] };
s.es = new EventSource(%s, { withCredentials: true });
s.es.onopen = () => { s.opened++; };
s.es.onmessage = (e) => s.events.push([e.lastEventId, e.data]);
s.es.onerror = () => { s.errors++; };
true
"""


def test_mercure_cookie_private(t):
    hub = t.hub("--mercure", "--jwt-secret", SECRET, "--mercure-issuer", ISSUER, "--mercure-audience", AUDIENCE)
    page = t.page()
    page.goto(hub.base + "/healthz")
    token = token08("subscribe", ["https://example.com/users/alice"])
    # The application's Set-Cookie, as the draft describes it.
    page.driver.add_cookie({
        "name": "__Secure-mercure_access_token", "value": token, "path": "/.well-known/mercure",
        "httpOnly": True, "secure": True, "sameSite": "Strict"})
    check(page.js("document.cookie") == "", "the cookie is HttpOnly")
    query = urllib.parse.urlencode([
        ("match_urlpattern", "https://example.com/users/:name"), ("match", "https://example.com/news")])
    page.js(WATCH % json.dumps("/.well-known/mercure?" + query))
    page.wait_js("__m.opened === 1", 5, "the Mercure stream to open")
    publisher = token08("publish", ["*"])
    mercure_publish(hub.base, [("topic", "https://example.com/users/bob"), ("data", "to bob"), ("private", "on")], publisher)
    alice = mercure_publish(
        hub.base, [("topic", "https://example.com/users/alice"), ("data", "to alice"), ("private", "on")], publisher)
    news = mercure_publish(hub.base, [("topic", "https://example.com/news"), ("data", "news")], publisher)
    page.wait_js("__m.events.length >= 2", 5, "two updates")
    check(page.js("__m.events") == [[alice, "to alice"], [news, "news"]],
          f"the private update the cookie's token grants, then the public one: {page.js('__m.events')}")
    check(page.js("__m.errors") == 0, "no error")
    check(token not in "\n".join(hub.lines), "the token never appears in the hub's log")
    check(not page.console_errors(), f"page errors: {page.console_errors()}")


HELPER = """
(async () => {
  const { MicroSSE, mercureURL } = await import("/microsse.js");
  const log = window.__sse = { events: [], urls: [] };
  const url = mercureURL("/.well-known/mercure", { topic: ["https://example.com/books/{id}", "https://example.com/me"] });
  window.__stream = new MicroSSE(url, {
    withCredentials: true, events: ["book"], name: "mercure-test",
    onEvent: (e) => log.events.push([e.lastEventId, e.type, e.data]),
  });
  return __stream.url;
})()
"""


def test_mercure_helper(t):
    hub = t.hub("--mercure", "--mercure-legacy", "--jwt-secret", SECRET, "--retry", "200")
    tabs = [t.page(), t.page()]
    cookie = hs256({"mercure": {"subscribe": ["https://example.com/me"]}}, None)
    for p in tabs:
        p.goto(hub.base + "/healthz")
        p.driver.add_cookie({"name": "mercureAuthorization", "value": cookie, "path": "/", "httpOnly": True})
        url = p.js(HELPER)
        check("topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D&topic=https%3A%2F%2Fexample.com%2Fme" in url,
              f"mercureURL encodes as URLSearchParams does: {url}")
    wait_until(lambda: sorted(p.js("__stream.role") for p in tabs) == ["follower", "leader"], 10, "a leader and a follower")
    wait_until(lambda: all(p.js("__stream.state") == "open" for p in tabs), 10, "open streams")
    publisher = hs256({"mercure": {"publish": ["*"]}}, None)
    want = []

    def post(topic, data, private=False, type_=None):
        fields = [("topic", topic), ("data", data)] + ([("private", "on")] if private else [])
        fields += [("type", type_)] if type_ else []
        want.append([mercure_publish(hub.base, fields, publisher), type_ or "message", data])

    post("https://example.com/books/1", "book 1", type_="book")
    post("https://example.com/me", "mine", private=True)
    mercure_publish(hub.base, [("topic", "https://example.com/others"), ("data", "x"), ("private", "on")], publisher)
    for p in tabs:
        wait_until(lambda: len(p.js("__sse.events")) >= 2, 10, "two updates in every tab")
        check(p.js("__sse.events") == want, f"the typed and the private update, once: {p.js('__sse.events')}")
    # The leader tab closes; an update is published before the other tab leads: it resumes
    # with lastEventID (draft-07) and gets it, and nothing twice.
    leader = next(p for p in tabs if p.js("__stream.role") == "leader")
    follower = next(p for p in tabs if p is not leader)
    leader.js("__stream.close(); true")
    post("https://example.com/books/2", "book 2", type_="book")
    follower.wait_js("__stream.role === 'leader'", 10, "the other tab to lead")
    post("https://example.com/me", "mine again", private=True)
    wait_until(lambda: len(follower.js("__sse.events")) >= 4, 10, "every update in the remaining tab")
    check(follower.js("__sse.events") == want, f"every update once, in order: {follower.js('__sse.events')}")
    resumed = follower.js("__stream._source.url")
    check(f"lastEventID={urllib.parse.quote(want[1][0], safe='')}" in resumed, f"resumed with lastEventID: {resumed}")
    for p in tabs:
        check(not p.console_errors(), f"page errors: {p.console_errors()}")
