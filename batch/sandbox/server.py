"""SandboxServer: the sandbox on a loopback port in a daemon thread; `serve` for the command line."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, TextIO

from ..config import SandboxOptions
from .app import Sandbox
from .httpd import HTTPServer


def _family(host: str) -> socket.AddressFamily:
    """The address family of a loopback host; ValueError for anything that is not loopback."""
    if host == "localhost":
        return socket.AF_INET
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise ValueError(f"the sandbox listens only on loopback (127.0.0.0/8, ::1, localhost), not {host!r}")
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


class SandboxServer:
    """The sandbox served from a daemon thread; also a context manager."""

    def __init__(self, options: SandboxOptions | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._family = _family(host)
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self.options = options or SandboxOptions()
        self.app = Sandbox(self.options, clock=clock)
        self.url = ""
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind and serve in a daemon thread; returns the base URL."""
        if self._httpd is not None:
            return self.url
        httpd = HTTPServer((self.host, self.port), self.app, self._family)
        port = int(httpd.server_address[1])
        shown = f"[{self.host}]" if self._family == socket.AF_INET6 else self.host
        self.url = f"http://{shown}:{port}"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"sandbox-{port}", daemon=True)
        self._httpd = httpd
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop accepting, close kept-alive connections, release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def ledger(self, window: float | None = None) -> dict[str, Any]:
        """The same JSON as GET /_sandbox/ledger[?window=SECONDS]."""
        return self.app.ledger_json(window)

    def reset(self, *, everything: bool = False) -> None:
        """Clear the ledger (POST /_sandbox/reset); `everything` also restores partners and sessions."""
        self.app.reset(everything=everything)

    def configure(self, **changes: Any) -> SandboxOptions:
        """Change latency, the fault rates, session_idle or task_ms while serving."""
        return self.app.configure(**changes)

    def issued_sids(self) -> list[str]:
        """Every SID ever issued, for tests that prove no output leaks one."""
        return self.app.edin.issued_sids()

    def issued_tokens(self) -> list[str]:
        """Every Diadoc access and rotated refresh token ever issued, for the same kind of test."""
        return self.app.diadoc.tokens.issued()

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve(options: SandboxOptions, *, host: str = "127.0.0.1", port: int = 0, out: TextIO = sys.stdout) -> None:
    """Print the URL, serve until SIGINT/SIGTERM (for `invite-batch sandbox`)."""
    server = SandboxServer(options, host=host, port=port)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        url = server.start()
        print(url, file=out, flush=True)
        print(f"ledger: {url}/_sandbox/ledger; stop with Ctrl+C", file=out, flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
