"""Serve the page with uvicorn on a loopback socket we bind ourselves (so the port, and the Host check, are known)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import uvicorn

from ..config import Config, is_loopback
from ..errors import UsageError
from ..logs import register_secret
from .app import create_app

log = logging.getLogger("batch.ui")


def check_loopback(host: str) -> None:
    """Only a loopback address may serve the page (SPEC §11)."""
    if not is_loopback(host):
        raise UsageError(f"--host {host}: the page serves on a loopback address only (127.0.0.1)")


class UiServer:
    """The page on a bound loopback socket, served by uvicorn in a thread; `url` carries the session token."""

    def __init__(self, configs: Mapping[str, Config], workdir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        check_loopback(host)
        self.token = token or secrets.token_urlsafe(32)
        register_secret(self.token)  # a URL with it must never reach a log line
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as err:
            self.sock.close()
            raise UsageError(f"cannot listen on {host}:{port}: {err.strerror}") from None
        self.sock.listen(128)  # the printed URL answers at once: connections wait here until uvicorn takes them
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.app = create_app(configs, workdir, token=self.token, port=self.port, hosts=(host,))
        # Our own logging stays; uvicorn's access log would print every URL (the first one holds the token).
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off"))
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def serve_forever(self) -> None:
        """In the calling (main) thread, until Ctrl-C or SIGTERM: uvicorn handles both; then runs stop gracefully."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.app.state.jobs.shutdown()

    def start(self) -> UiServer:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            self._thread.join(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.app.state.jobs.shutdown()
        self.sock.close()

    def __enter__(self) -> UiServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def serve(configs: Mapping[str, Config], workdir: Path, *, host: str = "127.0.0.1", port: int = 0,
          open_browser: bool = True) -> None:
    """`invite-batch ui`: print the one line with the URL, open the browser, serve until stopped."""
    os.umask(0o077)  # the checkpoint, its -wal/-shm files and the results: the operator's alone
    server = UiServer(configs, workdir, host=host, port=port)
    print(f"invite-batch ui: {server.url}", flush=True)
    sys.stdout.flush()
    if open_browser:
        webbrowser.open(server.url)
    server.serve_forever()
