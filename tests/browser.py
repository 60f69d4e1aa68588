"""Open a page in headless Chromium and report what a person would see go wrong.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
commands on fd 3, replies on fd 4, NUL-separated JSON), so no websocket client, no
chromedriver and no network port are needed. Run as a script to screenshot a page:
``python tests/browser.py PAGE.html OUT.png``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """Return the path of a Chromium or Chrome binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


@dataclass
class PageCheck:
    """What loading a page showed: console errors, exceptions and each image's state."""

    loaded: bool = False
    errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot: bytes | None = None


class _Pipe:
    """One DevTools session over Chromium's debugging pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], to_chrome: int, from_chrome: int) -> None:
        self._proc = proc
        self._out = to_chrome
        self._in = from_chrome
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 16)
                if not chunk:
                    raise ConnectionError(f"Chromium closed the pipe (exit {self._proc.poll()})")
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self, method: str, session: str | None = None, timeout: float = 30, **params: Any
    ) -> dict[str, Any]:
        """Send one command and return its result; events seen meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict[str, Any]:
        """Return the first event named `method`, waiting for it if not seen yet."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._read_message(deadline))

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            return


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            found.append("console: " + " ".join(str(a.get("value", a)) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append("exception: " + str(details.get("exception", {}).get("description")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            found.append("log: " + str(params["entry"].get("text")))
    return found


_IMAGES = (
    "JSON.stringify(Array.from(document.images).map(i => ({src: i.src.slice(0, 40), "
    "complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})))"
)


def check_page(
    chromium: str, page: Path, screenshot: bool = False, width: int = 1280, timeout: float = 60
) -> PageCheck:
    """Load `page` offline in headless Chromium and return what went wrong, if anything."""
    result = PageCheck()
    to_read, to_chrome = os.pipe()  # Chromium reads commands from fd 3
    from_chrome, to_write = os.pipe()  # and writes replies to fd 4
    with tempfile.TemporaryDirectory(prefix="selfinstruct-chromium-") as profile:
        args = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900"]
        # bash moves the pipe ends to fds 3 and 4 (dash takes single-digit fds only).
        command = " ".join(map(shlex.quote, args)) + f" about:blank 3<&{to_read} 4>&{to_write}"
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            pass_fds=(to_read, to_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_read)
        os.close(to_write)
        pipe = _Pipe(proc, to_chrome, from_chrome)
        try:
            target = pipe.call("Target.createTarget", url="about:blank", timeout=timeout)
            attached = pipe.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
            session = attached["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                pipe.call(f"{domain}.enable", session)
            pipe.call("Page.navigate", session, url=page.resolve().as_uri())
            pipe.wait_for("Page.loadEventFired", timeout=timeout)
            result.loaded = True
            pipe.drain(0.5)  # late console messages
            value = pipe.call("Runtime.evaluate", session, expression=_IMAGES, returnByValue=True)
            result.images = json.loads(value["result"]["value"])
            if screenshot:
                shot = pipe.call(
                    "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
                )
                result.screenshot = base64.b64decode(shot["data"])
            result.errors = _errors(pipe.events)
        finally:
            try:
                pipe.call("Browser.close", timeout=10)
            except (OSError, TimeoutError, ConnectionError, RuntimeError):
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, by its handle
                proc.wait(timeout=15)
            os.close(to_chrome)
            os.close(from_chrome)
    return result


if __name__ == "__main__":
    binary = find_chromium()
    if binary is None:
        sys.exit("no chromium on PATH: apt-get install -y chromium")
    checked = check_page(binary, Path(sys.argv[1]), screenshot=True)
    assert checked.screenshot is not None
    Path(sys.argv[2]).write_bytes(checked.screenshot)
    print(json.dumps({"errors": checked.errors, "images": checked.images}, indent=1))
