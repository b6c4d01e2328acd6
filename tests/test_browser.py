"""A generated report opens in a real browser: no console errors, every image decodes,
the page is not blank, and it fits a phone's width.

Headless Chromium (Debian's /usr/bin/chromium; .ci/run installs it) driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: fd 3 in, fd 4 out, messages
ending in NUL), so there is no extra dependency and no network port.
"""

from __future__ import annotations

import base64
import io
import json
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_report import L, positional_model, templates

import interp

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]  # fmt: skip


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None and Path("/usr/bin/chromium").exists():
        path = "/usr/bin/chromium"
    if path is None:
        pytest.skip("chromium is not available: install it with `apt-get install chromium`")
    return path


class Browser:
    """Just enough of the DevTools protocol: commands with ids, events collected."""

    def __init__(self, profile: Path) -> None:
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()

        def fds() -> None:  # in the child: commands on fd 3, replies on fd 4
            a, b = os.dup(to_child), os.dup(from_child)  # neither is 3 or 4 any more
            os.dup2(a, 3)  # dup2 clears close-on-exec: these two survive exec
            os.dup2(b, 4)

        # close_fds=False: closing runs after preexec_fn and would close 3 and 4 again;
        # every other descriptor Python opened is close-on-exec anyway (PEP 446).
        self.proc = subprocess.Popen(
            [_chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False,
        )  # fmt: skip
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _message(self, deadline: float) -> dict[str, Any]:
        sel = selectors.DefaultSelector()
        sel.register(self._read, selectors.EVENT_READ)
        while b"\0" not in self._buffer:
            if not sel.select(timeout=max(0.0, deadline - time.time())):
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._message(deadline))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._write)
        os.close(self._read)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    x, y = templates(24)
    rep = interp.report(positional_model(), None, data=(x, y), shifts=f"-{L // 2}:{L // 2}:4",
                        samples=24)  # fmt: skip
    return rep.save(tmp_path_factory.mktemp("browser") / "report")


@pytest.fixture(scope="module")
def page(report_dir, tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("profile"))
    try:
        target = next(t for t in browser.send("Target.getTargets")["targetInfos"]
                      if t["type"] == "page")  # fmt: skip
        browser.session = browser.send("Target.attachToTarget", targetId=target["targetId"],
                                       flatten=True)["sessionId"]  # fmt: skip
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            browser.send(domain)
        browser.send("Page.navigate", url=(report_dir / "report.html").as_uri())
        browser.wait_for("Page.loadEventFired")
        yield browser
    finally:
        browser.close()


def _evaluate(browser: Browser, expression: str) -> Any:
    result = browser.send("Runtime.evaluate", expression=expression, returnByValue=True,
                          awaitPromise=True)  # fmt: skip
    return result["result"]["value"]


def test_loads_without_console_errors(page):
    errors = [
        e["params"] for e in page.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]  # fmt: skip
    assert errors == []
    assert _evaluate(page, "document.title").startswith("Is ")


def test_every_image_has_decoded(page, report_dir):
    # decode() rejects for an image that cannot be decoded: it then counts as 0 x 0.
    sizes = _evaluate(
        page,
        "Promise.all(Array.from(document.images).map(i => i.decode()"
        ".then(() => [i.naturalWidth, i.naturalHeight], () => [0, 0])))",
    )
    assert len(sizes) == len(list((report_dir / "figures").iterdir())) > 0
    assert all(w > 0 and h > 0 for w, h in sizes)


def test_screenshot_is_not_blank(page):
    import matplotlib.image

    png = base64.b64decode(page.send("Page.captureScreenshot", format="png")["data"])
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")  # (H, W, 3 or 4) in [0, 1]
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    dark = (pixels[..., :3].mean(-1) < 0.5).mean()
    assert 0.005 < dark < 0.5  # text and figures on a light page, neither empty nor black


def test_fits_a_phone_screen(page):
    # mobile=False: a mobile viewport would zoom out to fit a too-wide page and hide it.
    page.send("Emulation.setDeviceMetricsOverride", width=390, height=844,
              deviceScaleFactor=1, mobile=False)  # fmt: skip
    try:
        widths = _evaluate(page, "[document.documentElement.scrollWidth, "
                                 "document.documentElement.clientWidth, "
                                 "Math.max(...Array.from(document.images).map("
                                 "i => i.getBoundingClientRect().right))]")  # fmt: skip
    finally:
        page.send("Emulation.clearDeviceMetricsOverride")
    page_width, viewport, image_right = widths
    assert page_width <= viewport and image_right <= viewport  # no sideways scrolling


# --- every screen: a phone (390 px) and a desktop (1280 px) ----------------------------

MIN_CSS_PX = 9.0  # the smallest figure text a reader should meet, in CSS px

LAYOUT = """(() => {
  const vw = document.documentElement.clientWidth;
  const figures = Array.from(document.querySelectorAll('img[data-min-points]')).map(i => {
    const r = i.getBoundingClientRect();
    const pt = parseFloat(i.dataset.minPoints), inches = parseFloat(i.dataset.widthIn);
    // text px = points x (shown CSS px per figure inch) / 72
    return {id: i.closest('figure').id, px: pt * r.width / (inches * 72), right: r.right};
  });
  const captions = Array.from(document.querySelectorAll('figcaption, p.caption')).map(c => {
    const r = c.getBoundingClientRect();
    let box = c.parentElement.getBoundingClientRect();
    for (let p = c.parentElement; p; p = p.parentElement) {  // the nearest clipping box
      const s = getComputedStyle(p);
      if (s.overflowX !== 'visible') { box = p.getBoundingClientRect(); break; }
    }
    return {text: c.textContent.slice(0, 60), left: r.left, right: r.right,
            boxLeft: box.left, boxRight: box.right, scroll: c.scrollWidth - c.clientWidth};
  });
  return {vw, page: document.documentElement.scrollWidth, figures, captions,
          backticks: document.body.innerText.includes('`')};
})()"""


@pytest.mark.parametrize("width", [390, 1280])
def test_layout_on_phone_and_desktop(page, width):
    page.send("Emulation.setDeviceMetricsOverride", width=width, height=900,
              deviceScaleFactor=1, mobile=False)  # fmt: skip
    try:
        out = _evaluate(page, LAYOUT)
    finally:
        page.send("Emulation.clearDeviceMetricsOverride")
    assert out["page"] <= out["vw"]  # no sideways scrolling of the page
    assert out["figures"]
    small = [f for f in out["figures"] if f["px"] < MIN_CSS_PX - 1e-6 or f["right"] > out["vw"]]
    assert small == []  # every figure's text >= 9 CSS px, every figure inside the screen
    clipped = [c for c in out["captions"] if c["scroll"] > 0 or c["right"] > c["boxRight"] + 0.5
               or c["left"] < c["boxLeft"] - 0.5]  # fmt: skip
    assert clipped == []  # captions wrap inside what shows them, never cut off
    assert not out["backticks"]  # `names` render as code, not as literal backticks
