"""Headless Chromium for the browser tests, driven by Selenium through Debian's chromedriver.

One Browser is one WebDriver session: Debian's chromedriver starting Debian's chromium headless
with a fresh profile in a temporary directory. Both paths (CHROMIUM, CHROMEDRIVER below) are given
explicitly, so Selenium Manager never runs (and SE_OFFLINE keeps it from downloading anything if
it did).
A Page is one tab (a WebDriver window handle). Network events come from chromedriver's
performance log (the same Network.* events Chromium reports), tagged with the tab they belong to.
"""

import json
import os
import shutil
import tempfile

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager, if ever reached, stays offline
os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from support import BrowserError, wait_until  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or "/usr/bin/chromedriver"

# Records uncaught exceptions and unhandled rejections of every page, before its own scripts run.
ERRORS = """
window.__pageErrors = [];
addEventListener("error", e => __pageErrors.push(String((e.error && e.error.stack) || e.message)));
addEventListener("unhandledrejection", e => __pageErrors.push("unhandled rejection: " + String(e.reason)));
"""


class Browser:
    def __init__(self, width=1280, height=900):
        for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
            if not os.access(path, os.X_OK):
                raise BrowserError(f"no {what} at {path} (Tests/browser/run.sh installs Debian's chromium and chromium-driver)")
        self.profile = tempfile.mkdtemp(prefix="microsse-chromium-")
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        options = Options()
        options.binary_location = CHROMIUM
        for arg in (
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
            # Tabs in the background keep their timers and rendering at full speed.
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--disable-renderer-backgrounding",
            f"--window-size={width},{height}",
            f"--user-data-dir={os.path.join(self.profile, 'profile')}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": False})
        service = Service(executable_path=CHROMEDRIVER, log_output=self.log_path)
        try:
            self.driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as e:
            out = self.output()
            shutil.rmtree(self.profile, ignore_errors=True)
            raise BrowserError(f"Chromium did not start: {e.msg or e}\n--- chromedriver log ---\n{out}")
        self.driver.set_script_timeout(30)
        self.version = f"Chrome/{self.driver.capabilities.get('browserVersion', '?')}"
        self.home = self.driver.current_window_handle  # a blank tab that stays open
        self.current = self.home
        self._events = []  # (window handle, method, params) from the performance log

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def switch(self, handle):
        if self.current != handle:
            self.driver.switch_to.window(handle)
            self.current = handle

    def events(self, handle, method=None):
        """Network events of one tab so far: [(method, params)]."""
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])
            self._events.append((msg.get("webview"), msg["message"]["method"], msg["message"].get("params", {})))
        return [(m, p) for h, m, p in self._events if h == handle and (method is None or m == method)]

    def new_page(self):
        self.driver.switch_to.new_window("tab")
        self.current = self.driver.current_window_handle
        page = Page(self, self.current)
        page.add_init_script(ERRORS)
        return page

    def close(self):
        driver = getattr(self, "driver", None)
        if driver:
            self.driver = None
            try:
                driver.quit()  # ends Chromium and chromedriver
            except Exception:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser, handle):
        self.browser = browser
        self.handle = handle
        self.closed = False

    @property
    def driver(self):
        self.browser.switch(self.handle)
        return self.browser.driver

    def events(self, method=None):
        return self.browser.events(self.handle, method)

    def add_init_script(self, source):
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def goto(self, url):
        """Navigates and returns once the page has loaded (WebDriver's normal page-load strategy)."""
        try:
            self.driver.get(url)
        except WebDriverException as e:
            raise BrowserError(f"navigate {url}: {e.msg or e}")

    def js(self, expression):
        """Evaluates expression (a statement list too) in the page's global scope; promises are awaited."""
        try:
            return self.driver.execute_script("return (0, eval)(arguments[0]);", expression)
        except WebDriverException as e:
            raise BrowserError(f"page threw: {(e.msg or str(e)).strip()}\n  in: {expression[:200]}")

    def wait_js(self, expression, timeout, what):
        """Polls a page expression until it is truthy; returns its value."""
        return wait_until(lambda: self.js(expression), timeout, what)

    def click(self, selector):
        """A real mouse click (press + release) in the middle of the element."""
        try:
            self.driver.find_element(By.CSS_SELECTOR, selector).click()
        except WebDriverException as e:
            raise BrowserError(f"click {selector}: {e.msg or e}")

    def type_into(self, selector, text):
        element = self.driver.find_element(By.CSS_SELECTOR, selector)
        element.clear()
        element.send_keys(text)

    def console_errors(self):
        return self.js("window.__pageErrors || []")

    def screenshot(self, path, width=1280, height=900):
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(self.driver.get_screenshot_as_png())

    def close(self):
        """Closes the tab (as a user closing it would: its scripts and connections end)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.driver.close()
        finally:
            self.browser.current = None
            self.browser.switch(self.browser.home)
