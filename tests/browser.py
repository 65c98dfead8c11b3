"""Headless Chromium (Debian's `chromium` package) driven over the DevTools protocol with aiohttp's
websocket client (a sparkserve dependency): open a page, collect console errors, evaluate scripts,
take a screenshot. A fresh --user-data-dir per browser; the process group is stopped on exit.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-port=0", "--window-size=1100,900")
START_TIMEOUT_S = 60.0


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab: `load(url)` then `evaluate(js)`; `problems` holds every console error and exception."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.next_id = 0
        self.problems: list[str] = []
        self.events: list[dict] = []

    async def send(self, method: str, **params: Any) -> dict:
        self.next_id += 1
        wanted = self.next_id
        await self.ws.send_json({"id": wanted, "method": method, "params": params})
        while True:
            msg = await self._receive()
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def _receive(self) -> dict:
        msg = json.loads((await self.ws.receive(timeout=START_TIMEOUT_S)).data)
        if "method" in msg:
            self.events.append(msg)
            self._note(msg)
        return msg

    def _note(self, msg: dict) -> None:
        params = msg.get("params", {})
        if msg["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            words = (str(a.get("value", a.get("description"))) for a in params["args"])
            self.problems.append("console: " + " ".join(words))
        elif msg["method"] == "Runtime.exceptionThrown":
            self.problems.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
        elif msg["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.problems.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())

    async def load(self, url: str) -> None:
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        await self.send("Page.navigate", url=url)
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            await self._receive()

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        height = await self.evaluate("document.documentElement.scrollHeight")
        await self.send("Emulation.setDeviceMetricsOverride", width=1100, height=int(height), deviceScaleFactor=1,
                        mobile=False)
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))


class Browser:
    def __init__(self, binary: str, profile: Path):
        self.binary, self.profile = binary, profile
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log = open(self.profile.parent / "chromium.log", "wb")
        self.proc = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        t0 = time.monotonic()
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() - t0 > START_TIMEOUT_S:
                log = (self.profile.parent / "chromium.log").read_text()
                raise RuntimeError(f"chromium did not start: {log[-2000:]}")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def run(self, work) -> Any:
        """Run `await work(page)` on the browser's first tab."""

        async def main() -> Any:
            async with aiohttp.ClientSession(trust_env=False) as http:
                tabs = await (await http.get(f"http://127.0.0.1:{self.port}/json/list")).json()
                page_url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
                async with http.ws_connect(page_url, max_msg_size=0) as ws:
                    return await work(Page(ws))

        return asyncio.run(main())
