"""The socket side: HTTP/1.1 keep-alive, one thread per connection, one send per answer, real drops."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any

from .app import Sandbox
from .wire import Request, join_headers

MAX_BODY = 1024 * 1024
MAX_HEADERS = 100
MAX_LINE = 65536


class Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a kept-alive connection and writes each answer in one send."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers must not wait for the peer's delayed ACK
    server: HTTPServer
    fields: dict[str, str]
    raw_requestline: bytes  # set by handle_one_request; typeshed omits it

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def parse_request(self) -> bool:
        """Request line and headers; the stdlib's version runs the e-mail parser, a third of a request's cost."""
        self.close_connection = True
        self.command, self.request_version = "", "HTTP/1.1"  # what send_error reads if the line is bad
        self.requestline = self.raw_requestline.decode("latin-1").rstrip("\r\n")
        parts = self.requestline.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad request line")
            return False
        self.command, self.path, self.request_version = parts
        pairs: list[tuple[str, str]] = []
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if len(line) > MAX_LINE or len(pairs) >= MAX_HEADERS:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return False
            if not sep or not name or name != name.strip():  # also refuses obsolete folded lines
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad header line")
                return False
            pairs.append((name, value.strip()))
        self.fields = join_headers(pairs)
        connection = self.fields.get("connection", "").lower()
        self.close_connection = ("close" in connection if self.request_version == "HTTP/1.1"
                                 else "keep-alive" not in connection)
        if self.fields.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def do_GET(self) -> None:
        body = self._body()
        if body is None:
            return
        req = Request.build(self.command, self.path, self.fields, body, self.client_address[0])
        response = self.server.app.handle(req)
        if response is None:
            self.close_connection = True  # nothing written: the peer sees the connection close
            return
        head = [f"HTTP/1.1 {response.status} {HTTPStatus(response.status).phrase}",
                f"Date: {_http_date()}", "Server: invite-batch-sandbox"]
        if response.status not in (204, 304):  # RFC 9110 §8.6: a 204 carries no Content-Length
            head.append(f"Content-Length: {len(response.body)}")
        if response.content_type:
            head.append(f"Content-Type: {response.content_type}")
        head += [f"{k}: {v}" for k, v in response.headers]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _body(self) -> bytes | None:
        """The request body (Content-Length or chunked); None after answering a malformed one."""
        if "chunked" in self.fields.get("transfer-encoding", "").lower():
            return self._chunked()
        try:
            length = int(self.fields.get("content-length") or 0)
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
                while self.rfile.readline(MAX_LINE).strip():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the ledger is the sandbox's record, not an access log."""


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class HTTPServer(ThreadingHTTPServer):
    """A thread per connection; remembers open connections so stopping can close kept-alive ones."""

    daemon_threads = True
    request_queue_size = 128  # a burst of new connections must not be refused

    def __init__(self, address: tuple[str, int], app: Sandbox, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, Handler)

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
