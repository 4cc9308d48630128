"""End-to-end test of the web UI served at ``GET /`` (bentohost/ui/index.html).

A real headless Chromium loads the page from a running ``bentohost serve
tests/services/ui_demo.py``, fills the generated forms, presses the buttons and
reads the results back from the DOM. Chromium is driven over the Chrome DevTools
Protocol through ``--remote-debugging-pipe`` (NUL-separated JSON on fds 3/4), so
no websocket package, Selenium or driver download is needed. The browser tests
skip when no Chromium binary is installed (``apt-get install chromium``;
``BH_CHROMIUM=/path`` picks another binary).

``BH_UI_TEST_URL=http://host:port`` runs the tests against an already running
server instead of starting one; ``BH_UI_SCREENSHOT=/path.png`` saves a full-page
screenshot there (one is always written to the test's tmp dir).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "bentohost" / "ui" / "index.html"

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    env = os.environ.get("BH_CHROMIUM")
    if env:
        return env if os.path.exists(env) else shutil.which(env)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = find_chromium()


# --------------------------------------------------------------------------- a tiny CDP client


class CDPError(RuntimeError):
    pass


class Chrome:
    """Headless Chromium with one page, driven over --remote-debugging-pipe."""

    def __init__(self, binary: str, profile_dir: Path, log_path: Path):
        cmd_r, self._cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
        self._out_r, out_w = os.pipe()  # Chromium writes replies/events on fd 4
        # move the child's ends above 9 so the shell's "3<&N 4>&M" cannot clobber them
        cmd_r, out_w = self._high_fd(cmd_r), self._high_fd(out_w)
        args = [
            binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--mute-audio",
            "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile_dir}",
            "--window-size=1280,1000", "about:blank",
        ]
        script = f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w} {cmd_r}<&- {out_w}>&-'
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            # bash, not sh: dash cannot redirect file descriptors above 9
            [shutil.which("bash") or "/bin/bash", "-c", script, *args],
            pass_fds=(cmd_r, out_w), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        os.close(cmd_r)
        os.close(out_w)
        self.log_path = log_path
        self._id = 0
        self._cond = threading.Condition()
        self._replies: dict[int, dict] = {}
        self._closed = False
        self.events: list[dict] = []
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.session = self._attach_page()

    @staticmethod
    def _high_fd(fd: int) -> int:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(fd)
        return new

    # -- transport
    def _read_loop(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._out_r, 1 << 16)
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
                        self.events.append(msg)
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        with self._cond:
            self._id += 1
            mid = self._id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                if self._closed:
                    raise CDPError(f"chromium went away during {method}; log:\n{self.log()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CDPError(f"no reply to {method} within {timeout}s")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _attach_page(self) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=session)
        self.send("Runtime.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session=session)
        return session

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - best effort, killed below anyway
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(5)
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    # -- page helpers
    def page(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return self.send(method, params, session=self.session, timeout=timeout)

    def js(self, expression: str, timeout: float = 30.0):
        res = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True,
                                             "userGesture": True}, timeout=timeout)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise CDPError(f"JS error in {expression!r}: {d.get('exception', {}).get('description') or d.get('text')}")
        return res["result"].get("value")

    def wait_js(self, expression: str, timeout: float = 15.0, what: str | None = None):
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or expression}")
            time.sleep(0.05)

    def goto(self, url: str):
        self.page("Page.navigate", {"url": url})
        self.wait_js("document.readyState === 'complete' && !!document.body && !!document.body.dataset.ready",
                     what=f"{url} to load and render")

    def set_value(self, elem_id: str, value: str):
        self.js(f"""(() => {{
            const el = document.getElementById({json.dumps(elem_id)});
            if (!el) throw new Error('no element #' + {json.dumps(elem_id)});
            el.value = {json.dumps(value)};
            el.dispatchEvent(new Event('input', {{bubbles: true}}));
            el.dispatchEvent(new Event('change', {{bubbles: true}}));
        }})()""")

    def type_into(self, elem_id: str, text: str):
        """Focus an input, clear it and type ``text`` through the input pipeline."""
        self.js(f"(() => {{ const el = document.getElementById({json.dumps(elem_id)}); el.focus(); el.select(); }})()")
        self.page("Input.insertText", {"text": text})

    def click(self, elem_id: str):
        self.js(f"document.getElementById({json.dumps(elem_id)}).click()")

    def text(self, elem_id: str) -> str:
        return self.js(f"(document.getElementById({json.dumps(elem_id)}) || {{}}).innerText")

    def set_files(self, elem_id: str, paths: list[str]):
        obj = self.page("Runtime.evaluate", {"expression": f"document.getElementById({json.dumps(elem_id)})"})
        self.page("DOM.setFileInputFiles", {"files": paths, "objectId": obj["result"]["objectId"]})

    def screenshot(self, path: Path):
        data = self.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, timeout=60)["data"]
        Path(path).write_bytes(base64.b64decode(data))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ui_url(request) -> str:
    url = os.environ.get("BH_UI_TEST_URL")
    if url:
        return url.rstrip("/")
    factory = request.getfixturevalue("module_server_factory")
    srv = factory("ui_demo.py:UiDemo", "--workers", "1")
    r = srv.get("/")
    assert r.status_code == 200, f"GET / answered {r.status_code}: {r.text[:300]}"
    return srv.url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium binary (apt-get install chromium, or set BH_CHROMIUM)")
    d = tmp_path_factory.mktemp("chromium")
    chrome = Chrome(CHROMIUM, d / "profile", d / "chromium.log")
    yield chrome
    chrome.close()


@pytest.fixture
def page(browser, ui_url):
    browser.events.clear()
    browser.goto(ui_url + "/")
    yield browser
    errors = [e["params"]["exceptionDetails"] for e in list(browser.events) if e.get("method") == "Runtime.exceptionThrown"]
    assert not errors, f"uncaught JavaScript errors on the page: {errors}"


def wait_done(b: Chrome, api: str, timeout: float = 20.0) -> dict:
    """Wait until the call of ``api`` finished; return the status pill's code, state and text."""
    b.wait_js(f"""(() => {{ const s = document.getElementById('{api}-status');
        return s && s.dataset.state && s.dataset.state !== 'running'; }})()""", timeout, what=f"{api} to finish")
    return b.js(f"""(() => {{ const s = document.getElementById('{api}-status');
        return {{code: Number(s.dataset.code), state: s.dataset.state, text: s.textContent}}; }})()""")


# --------------------------------------------------------------------------- tests


def test_page_is_self_contained():
    html = PAGE.read_text()
    assert "<script src" not in html and "<link rel=\"stylesheet\"" not in html
    for ext in ("http://", "https://", "//cdn", "@import", "fonts.googleapis"):
        assert ext not in html, f"page references an external resource ({ext})"


def test_served_at_root(ui_url):
    import requests

    r = requests.get(ui_url + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="apis"' in r.text


def test_lists_apis_with_labelled_inputs(page):
    assert page.text("service-name") == "UiDemo"
    assert "demo service" in page.text("service-description")
    assert page.js("document.title").startswith("UiDemo")
    cards = page.js("[...document.querySelectorAll('details.api')].map(d => [d.id, d.open])")
    # /schema.json lists routes by attribute name, as BentoML does
    names = sorted(("greet", "quote", "shout", "image", "count", "upload", "download"))
    assert cards == [[f"api-{n}", True] for n in names]
    assert page.text("greet-summary").startswith("POST")
    assert "/greet" in page.text("greet-summary")
    # every control has a stable id and an accessible name
    unlabeled = page.js("""[...document.querySelectorAll('form input, form textarea, form select')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-labelledby')
                      && !el.getAttribute('aria-label')).map(el => el.id)""")
    assert unlabeled == []
    kinds = page.js("""Object.fromEntries(['greet-name','greet-times','greet-shout','quote-order','quote-price',
        'quote-tags','shout-root','upload-f','upload-note','count-n'].map(id => {
          const el = document.getElementById(id); return [id, el ? el.tagName + ':' + (el.type || '') : null]; }))""")
    assert kinds == {
        "greet-name": "INPUT:text", "greet-times": "INPUT:number", "greet-shout": "INPUT:checkbox",
        "quote-order": "TEXTAREA:textarea", "quote-price": "INPUT:number", "quote-tags": "TEXTAREA:textarea",
        "shout-root": "TEXTAREA:textarea", "upload-f": "INPUT:file", "upload-note": "INPUT:text",
        "count-n": "INPUT:number",
    }
    assert page.js("document.getElementById('greet-times').value") == "1"  # defaults are prefilled
    assert page.js("document.getElementById('quote-price').value") == "2.5"
    for api in ("greet", "quote", "count"):
        assert page.js(f"['{api}-submit','{api}-output','{api}-status'].every(id => document.getElementById(id))")


def test_text_api(page):
    page.type_into("greet-name", "Ada")
    page.set_value("greet-times", "2")
    page.click("greet-submit")
    st = wait_done(page, "greet")
    assert st["code"] == 200 and st["state"] == "ok", st
    assert st["text"].startswith("200") and ("ms" in st["text"] or " s" in st["text"])
    assert page.text("greet-output") == "Hello, Ada! Hello, Ada!"
    # booleans go through as JSON booleans
    page.click("greet-shout")
    page.click("greet-submit")
    wait_done(page, "greet")
    page.wait_js("document.getElementById('greet-output').innerText === 'HELLO, ADA! HELLO, ADA!'")


def test_json_api_and_errors(page):
    page.set_value("quote-order", '{"item": "tea", "qty": 3}')
    page.set_value("quote-tags", '["hot", "green"]')
    page.click("quote-submit")
    st = wait_done(page, "quote")
    assert st["code"] == 200, st
    assert page.js("document.getElementById('quote-output').dataset.kind") == "json"
    shown = page.text("quote-output")
    assert "\n  " in shown  # pretty-printed
    assert json.loads(shown) == {"item": "tea", "qty": 3, "total": 7.5, "tags": ["hot", "green"]}

    # a field that is not JSON is caught before anything is sent
    page.set_value("quote-order", "{not json")
    page.click("quote-submit")
    st = wait_done(page, "quote")
    assert st["state"] == "error" and "Not sent" in st["text"] and "order" in st["text"]
    assert "invalid JSON" in page.text("quote-order-error")
    assert json.loads(page.text("quote-output"))["item"] == "tea"  # previous result kept

    # a server-side validation error is shown with its status
    page.set_value("quote-order", '{"qty": 1}')
    page.click("quote-submit")
    st = wait_done(page, "quote")
    assert st["code"] == 400 and st["state"] == "error", st
    body = json.loads(page.text("quote-output"))
    assert "validation error" in json.dumps(body)


def test_root_text_input(page):
    page.set_value("shout-root", "quiet words")
    page.click("shout-submit")
    st = wait_done(page, "shout")
    assert st["code"] == 200, st
    assert page.text("shout-output") == "QUIET WORDS"


def test_image_output(page):
    page.set_value("image-green", "128")
    page.click("image-submit")
    st = wait_done(page, "image")
    assert st["code"] == 200, st
    page.wait_js("(() => { const i = document.getElementById('image-image'); return i && i.complete && i.naturalWidth > 0; })()",
                 what="the returned image to decode")
    assert page.js("[document.getElementById('image-image').naturalWidth, document.getElementById('image-image').naturalHeight]") == [32, 16]
    assert page.js("document.getElementById('image-image').src").startswith("blob:")
    assert page.js("document.getElementById('image-download').getAttribute('download')").endswith(".png")


def test_file_output_is_a_download(page):
    page.set_value("download-text", "ab")
    page.click("download-submit")
    st = wait_done(page, "download")
    assert st["code"] == 200, st
    link = page.js("(() => { const a = document.getElementById('download-download'); return [a.getAttribute('download'), a.href]; })()")
    assert link[0] and link[1].startswith("blob:")
    assert page.js("fetch(document.getElementById('download-download').href).then(r => r.text())") == "ababab"


def test_streamed_output_grows(page):
    page.set_value("count-n", "4")
    page.set_value("count-delay", "0.5")
    page.click("count-submit")
    # a partial result must be visible while the call is still running
    partial = page.wait_js("""(() => { const o = document.getElementById('count-output').innerText || '';
        const s = document.getElementById('count-status').dataset.state;
        return s === 'running' && o.includes('tick 0') && !o.includes('tick 3') ? o : null; })()""",
                           timeout=10, what="a partial stream")
    assert partial.startswith("tick 0")
    st = wait_done(page, "count", timeout=20)
    assert st["code"] == 200, st
    assert page.text("count-output").split() == ["tick", "0", "tick", "1", "tick", "2", "tick", "3"]
    assert int(page.js("document.getElementById('count-output').dataset.chunks")) >= 2
    assert "chunk" in st["text"]


def test_file_upload(page, tmp_path):
    f = tmp_path / "payload.bin"
    data = os.urandom(3000) + b"end"
    f.write_bytes(data)
    page.set_files("upload-f", [str(f)])
    page.set_value("upload-note", "a note")
    page.click("upload-submit")
    st = wait_done(page, "upload")
    assert st["code"] == 200, (st, page.text("upload-output"))
    out = json.loads(page.text("upload-output"))
    assert out["size"] == len(data)
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert out["note"] == "a note"


def test_screenshot(page, tmp_path):
    page.type_into("greet-name", "Grace")
    page.click("greet-submit")
    wait_done(page, "greet")
    page.set_value("quote-order", '{"item": "tea", "qty": 2}')
    page.click("quote-submit")
    wait_done(page, "quote")
    page.click("image-submit")
    wait_done(page, "image")
    page.wait_js("(() => { const i = document.getElementById('image-image'); return i && i.complete; })()")
    shot = tmp_path / "ui.png"
    page.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dest = os.environ.get("BH_UI_SCREENSHOT")
    if dest:
        shutil.copyfile(shot, dest)
