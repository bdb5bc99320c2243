"""A tiny W3C WebDriver client over plain HTTP (urllib + json), driving Debian's chromium through
/usr/bin/chromedriver (packages chromium and chromium-driver): nothing is downloaded and no
selenium is needed. Used by the console's browser test (test_ui_browser.py).

    with Browser(spki_pins=[...]) as b:
        b.get("https://127.0.0.1:1234/ui/login")
        b.find("#user").send_keys("alice")
        b.wait_js("return document.querySelectorAll('tr.node').length === 5", 10, "five rows")

The browser trusts exactly the certificates whose public keys are pinned
(--ignore-certificate-errors-spki-list: Chromium on Linux keeps its trust store in an NSS
database, which would need certutil); every other certificate error still fails the page.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

CHROMEDRIVER = os.environ.get("TANDEM_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = os.environ.get("TANDEM_CHROMIUM", "/usr/bin/chromium")
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"
START_TIMEOUT_S = 20
COMMAND_TIMEOUT_S = 60


class WebDriverError(Exception):
    pass


def spki_pin(cert_pem_path):
    """The base64 SHA-256 of a certificate's SubjectPublicKeyInfo, as Chromium's pin list wants."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_pem_path, "-noout", "-pubkey"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                            capture_output=True, check=True).stdout
    return base64.b64encode(digest).decode()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Element:
    def __init__(self, browser, element_id):
        self.browser = browser
        self.id = element_id

    def _path(self, suffix):
        return "/element/%s/%s" % (self.id, suffix)

    def click(self):
        self.browser.command("POST", self._path("click"), {})
        return self

    def send_keys(self, text):
        self.browser.command("POST", self._path("value"), {"text": text})
        return self

    @property
    def text(self):
        return self.browser.command("GET", self._path("text"))

    def attribute(self, name):
        return self.browser.command("GET", self._path("attribute/%s" % name))


class Browser:
    """A headless chromium session; close() (or the with block) ends it and stops chromedriver
    by its PID."""

    def __init__(self, spki_pins=(), lang="en-US", window="1280,1000"):
        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="tandem-chromium-")
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        self.process = None
        self.session = None
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--window-size=%s" % window, "--lang=%s" % lang,
                "--user-data-dir=%s" % os.path.join(self.profile, "user")]
        if spki_pins:
            args.append("--ignore-certificate-errors-spki-list=%s" % ",".join(spki_pins))
        self.args = args

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def start(self):
        log = open(self.log_path, "w")
        self.process = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port],
                                        stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if self._request("GET", "/status").get("ready"):
                    break
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise WebDriverError("chromedriver did not start (log %s)" % self.log_path)
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "acceptInsecureCerts": False,
            "goog:chromeOptions": {"binary": CHROMIUM, "args": self.args}}}}
        self.session = self._request("POST", "/session", caps)["sessionId"]

    def close(self):
        try:
            if self.session is not None:
                self._request("DELETE", "/session/%s" % self.session)
        except (OSError, WebDriverError):
            pass
        self.session = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=COMMAND_TIMEOUT_S) as resp:
                answer = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                value = json.loads(e.read()).get("value", {})
            except ValueError:
                value = {}
            raise WebDriverError("%s %s: %s %s" % (method, path, value.get("error", e.code),
                                                   str(value.get("message", ""))[:300]))
        value = answer.get("value", answer)
        if method == "POST" and path == "/session":
            return value
        return value

    def command(self, method, path, body=None):
        return self._request(method, "/session/%s%s" % (self.session, path), body)

    def get(self, url):
        self.command("POST", "/url", {"url": url})

    @property
    def url(self):
        return self.command("GET", "/url")

    def find(self, css):
        value = self.command("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, value[ELEMENT_KEY])

    def click(self, css, timeout=10):
        """Finds css and clicks it, again while the page redraws it under the click (a stale
        element)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.find(css).click()
            except WebDriverError as e:
                if "stale element" not in str(e) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def text(self, css, timeout=10):
        """The text of the element css names, read again while the page redraws it (a stale
        element: the live updates replace the table under the read)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.find(css).text
            except WebDriverError as e:
                if "stale element" not in str(e) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def find_all(self, css):
        values = self.command("POST", "/elements", {"using": "css selector", "value": css})
        return [Element(self, v[ELEMENT_KEY]) for v in values]

    def js(self, script, *args):
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait_js(self, script, timeout, what, *args):
        """Polls script (a function body returning a truthy value when done) until it holds;
        returns its value or raises naming what it waited for."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.js(script, *args)
            except WebDriverError as e:
                last = e
            if last and not isinstance(last, WebDriverError):
                return last
            time.sleep(0.1)
        raise WebDriverError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))

    def screenshot(self, path):
        png = base64.b64decode(self.command("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        return path
