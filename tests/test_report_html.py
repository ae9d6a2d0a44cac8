"""report.html in headless Chromium: it loads without console errors or exceptions, fetches
nothing but itself and its data URIs, has a section per paper and per experiment, and every
image decodes (in the page, and in Python with PIL).

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: requests
on fd 3, replies and events on fd 4, each a JSON message ending in NUL), standard library only.
Skipped when no ``chromium`` is installed (`make install` installs it where it can)."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.report_tree import GCAM, MISSING, OPPSD, write_tree
from xai_bench.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
TIMEOUT = 15.0  # seconds for the whole page session
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--no-first-run", "--no-default-browser-check",
         "--remote-debugging-pipe")  # fmt: skip
BAD_CONSOLE = ("error", "assert", "warning")
# In the page: the ids of the sections and articles, and whether each image decodes.
PROBE = """(async () => ({
  ids: Array.from(document.querySelectorAll('section[id], article[id]')).map(e => e.id),
  images: await Promise.all(Array.from(document.images).map(
    img => img.decode().then(() => img.naturalWidth > 0 && img.naturalHeight > 0, () => false))),
  title: document.title,
}))()"""


def high(fd: int) -> int:
    """``fd`` moved to a number >= 10 (clear of fds 3 and 4, which the child's pipe ends take)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class DevTools:
    """A headless Chromium and its DevTools protocol over the debugging pipe."""

    def __init__(self, profile: Path) -> None:
        to_browser, self._send = os.pipe()
        self._recv, from_browser = os.pipe()
        to_browser, from_browser = high(to_browser), high(from_browser)
        # bash puts the pipe ends on fds 3 and 4 and execs chromium (no Python in the child)
        move = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-'
        args = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", move, *args],
            pass_fds=(to_browser, from_browser),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self.deadline = time.monotonic() + TIMEOUT
        self.events: list[dict[str, Any]] = []
        self._buffer, self._id = b"", 0

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self._recv], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._recv, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def wait(self, method: str) -> dict[str, Any]:
        """The next event ``method`` (the events before it are kept in ``events``)."""
        while (msg := self._message()).get("method") != method:
            self.events.append(msg)
        return msg

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._send, json.dumps(msg).encode() + b"\0")
        while (reply := self._message()).get("id") != self._id:
            self.events.append(reply)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply["result"]

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.proc.wait(timeout=5)
        except (AssertionError, OSError, TimeoutError, EOFError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._send)
            os.close(self._recv)


def load(page: Path, profile: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Open ``page`` in a fresh tab, wait for its load event and run :data:`PROBE`; return the
    probe's result and the protocol events seen (console, exceptions, log, network)."""
    tools = DevTools(profile)
    try:
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        sid = session["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            tools.call(f"{domain}.enable", session=sid)
        tools.call("Page.navigate", {"url": page.as_uri()}, sid)
        tools.wait("Page.loadEventFired")
        found = tools.call("Runtime.evaluate", {"expression": PROBE, "awaitPromise": True,
                                                "returnByValue": True}, sid)  # fmt: skip
        assert "exceptionDetails" not in found, found["exceptionDetails"]
        return found["result"]["value"], tools.events
    finally:
        tools.close()


def problems(events: list[dict[str, Any]], page: Path) -> list[str]:
    """Console errors and warnings, uncaught exceptions, error log entries and any request for
    something other than the page itself or a data URI."""
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in BAD_CONSOLE:
            out.append(f"console.{params['type']}: {params['args']}")
        elif method == "Runtime.exceptionThrown":
            out.append(f"exception: {params['exceptionDetails']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            out.append(f"log: {params['entry']}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if url != page.as_uri() and not url.startswith("data:"):
                out.append(f"request: {url}")
        elif method == "Network.loadingFailed":
            out.append(f"loading failed: {params}")
    return out


def test_report_html_loads_with_every_section_and_image(tmp_path: Path) -> None:
    root, outputs = write_tree(tmp_path)
    _, page = write_report("embedded", outputs, root=root)
    html = page.read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 1, "one figure in the tree"
    for data in uris:  # the bytes are a real image
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            img.load()
            assert img.size == (6, 4)
    assert not re.search(r'(src|href)="(?!data:|#)', html), "a link out of the page"

    found, events = load(page, tmp_path / "profile")

    assert problems(events, page) == []
    assert found["title"] == "Reproduction report — scale embedded"
    papers = [f"paper-{name.split('/')[0]}" for name in (OPPSD, GCAM, MISSING)]
    experiments = ["exp-" + name.replace("/", "-") for name in (OPPSD, GCAM, MISSING)]
    assert set(found["ids"]) == {"overview", "not-run", *papers, *experiments}
    assert found["images"] == [True]
