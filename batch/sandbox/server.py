"""The sandbox on a loopback socket: HTTP/1.1 keep-alive, one thread per connection, real drops."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import FrameType, TracebackType
from typing import Any, TextIO

from ..config import SandboxOptions
from .app import Sandbox
from .wire import Request

MAX_BODY = 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a kept-alive connection and writes each answer in one send."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers must not wait for the peer's delayed ACK
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:
        body = self._body()
        if body is None:
            return
        req = Request.build(self.command, self.path, self.headers, body, self.client_address[0])
        response = self.server.app.handle(req)
        if response is None:
            self.close_connection = True  # nothing written: the peer sees the connection close
            return
        head = [f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
                f"Date: {formatdate(usegmt=True)}", "Server: invite-batch-sandbox",
                f"Content-Length: {len(response.body)}"]
        if response.content_type:
            head.append(f"Content-Type: {response.content_type}")
        head += [f"{k}: {v}" for k, v in response.headers]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None after answering a malformed one."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self.send_error(413 if length > MAX_BODY else 400)
            return None
        return self.rfile.read(length) if length else b""

    def _chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(100).split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            total += size
            if size < 0 or total > MAX_BODY:
                self.close_connection = True
                self.send_error(400)
                return None
            if size == 0:
                while self.rfile.readline(8192).strip():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the ledger is the sandbox's record, not an access log."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of new connections must not be refused

    def __init__(self, address: tuple[str, int], app: Sandbox, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own server_bind resolves getfqdn(host), which can stall on a broken resolver.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Wake every handler blocked on a kept-alive connection so it ends."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # peers hanging up are normal
            super().handle_error(request, client_address)


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
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind and serve in a daemon thread; returns the base URL."""
        if self._httpd is not None:
            return self.url
        httpd = _HTTPServer((self.host, self.port), self.app, self._family)
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
        """Change latency_ms, error_rate, throttle_rate, drop_rate or session_idle while serving."""
        return self.app.configure(**changes)

    def issued_sids(self) -> list[str]:
        """Every SID ever issued, for tests that prove no output leaks one."""
        return self.app.edin.issued_sids()

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
