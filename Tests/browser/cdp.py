"""A minimal Chrome DevTools Protocol client over --remote-debugging-pipe (stdlib only).

Chromium reads NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4, so
no websocket library and no debugging port are needed. One Browser owns one headless Chromium
with a fresh profile in a temporary directory; Page is one tab attached with a flat session.
"""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time


class CDPError(Exception):
    pass


def find_chromium():
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise CDPError("no chromium executable on PATH (Tests/browser/run.sh installs Debian's chromium)")


def _move_high(fd):
    """Returns a duplicate of fd numbered 10 or more and closes fd."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    def __init__(self, width=1280, height=900):
        self.profile = tempfile.mkdtemp(prefix="microsse-chromium-")
        cmd_r, cmd_w = os.pipe()  # we write commands, chromium reads them on fd 3
        ev_r, ev_w = os.pipe()  # chromium writes replies and events on fd 4, we read
        # bash moves the child's ends onto fds 3 and 4 and closes the originals; the originals are
        # first moved to 10+ so they never collide with 3 or 4.
        cmd_r, ev_w = _move_high(cmd_r), _move_high(ev_w)
        wrapper = f'exec "$0" "$@" 3<&{cmd_r} 4>&{ev_w} {cmd_r}<&- {ev_w}>&-'
        args = [
            "/bin/bash",
            "-c",
            wrapper,
            find_chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--password-store=basic",
            "--use-mock-keychain",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--font-render-hinting=none",
            f"--window-size={width},{height}",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.log_path = os.path.join(self.profile, "chromium.log")
        self._log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=(cmd_r, ev_w),
                start_new_session=True,
            )
        finally:
            for fd in (cmd_r, ev_w):
                os.close(fd)
        self._out = cmd_w
        self._in = ev_r
        self._next_id = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._replies = {}
        self._events = []  # (sessionId, method, params)
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        try:
            version = self.call("Browser.getVersion", timeout=20)
        except CDPError as e:
            out = self.output()
            self.close()
            raise CDPError(f"Chromium did not start: {e}\n--- chromium output ---\n{out}")
        self.version = version.get("product", "?")

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def _read_loop(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self._events.append((msg.get("sessionId"), msg.get("method"), msg.get("params", {})))
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(self, method, params=None, session=None, timeout=15):
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        try:
            os.write(self._out, data)
        except OSError as e:
            raise CDPError(f"{method}: pipe to Chromium closed ({e})")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._closed:
                    raise CDPError(f"{method}: Chromium exited")
                if left <= 0:
                    raise CDPError(f"{method}: no reply within {timeout}s")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def events(self, session=None, method=None):
        with self._lock:
            return [(m, p) for s, m, p in self._events if (session is None or s == session) and (method is None or m == method)]

    def new_page(self):
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, target, session)

    def close(self):
        if getattr(self, "proc", None) and self.proc.poll() is None:
            try:
                self.call("Browser.close", timeout=3)
            except CDPError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, 9)
                except OSError:
                    pass
                self.proc.wait(timeout=5)
        for fd in ("_out", "_in"):
            try:
                os.close(getattr(self, fd))
            except (OSError, AttributeError):
                pass
            setattr(self, fd, -1)
        try:
            self._log.close()
        except AttributeError:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser, target, session):
        self.browser = browser
        self.target = target
        self.session = session
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Network.enable")

    def call(self, method, params=None, timeout=15):
        return self.browser.call(method, params, session=self.session, timeout=timeout)

    def events(self, method=None):
        return self.browser.events(self.session, method)

    def add_init_script(self, source):
        self.call("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def goto(self, url, timeout=15):
        before = len(self.events("Page.loadEventFired"))
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigate {url}: {result['errorText']}")
        wait_until(lambda: len(self.events("Page.loadEventFired")) > before, timeout, f"load event of {url}")

    def js(self, expression, timeout=15):
        """Evaluates expression in the page (promises awaited) and returns its JSON value."""
        r = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError(f"page threw: {text}\n  in: {expression[:200]}")
        return r["result"].get("value")

    def wait_js(self, expression, timeout, what):
        """Polls a page expression until it is truthy; returns its value."""
        return wait_until(lambda: self.js(expression), timeout, what)

    def click(self, selector):
        """A real mouse click (press + release) in the middle of the element."""
        box = self.js(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if not box:
            raise CDPError(f"no element {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1})

    def type_into(self, selector, text):
        self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select && e.select(); }})()")
        self.call("Input.insertText", {"text": text})

    def console_errors(self):
        out = []
        for m, p in self.events("Runtime.exceptionThrown"):
            out.append(p.get("exceptionDetails", {}).get("exception", {}).get("description", "exception"))
        return out

    def screenshot(self, path, width=1280, height=900):
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.browser.call("Target.closeTarget", {"targetId": self.target}, timeout=5)
        except CDPError:
            pass


def wait_until(fn, timeout, what, interval=0.02):
    """Polls fn until it returns something truthy, or fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except CDPError as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)
