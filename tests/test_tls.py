"""Transport security: TLS always verified, `ca_bundle`, the standard proxy variables, no plain http off loopback.

A private CA and a server certificate for 127.0.0.1 are made with the `openssl` command; a TLS relay in
front of the real sandbox stands in for a provider (or a TLS-inspecting corporate proxy) whose certificate
is signed by that CA.
"""

from __future__ import annotations

import logging
import selectors
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import openpyxl
import pytest
import xlsxwriter
import yaml

from batch.checkpoint import Journal
from batch.cli import main
from batch.config import RetryPolicy, Timeouts, load_config, parse_config
from batch.errors import ConfigError, UnreachableError
from batch.http import HttpClient
from batch.sandbox import SandboxServer

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
LEAF_EXTENSIONS = """\
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:provider.test
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
"""


# ------------------------------------------------------------------ certificates

class Pki:
    """A private CA (`ca`) and a key and certificate for 127.0.0.1 that it signed."""

    def __init__(self, folder: Path) -> None:
        self.ca, self.cert, self.key = folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Made once per module with the openssl command (the project depends on no crypto library)."""
    openssl = shutil.which("openssl")
    assert openssl, "these tests make their certificates with the `openssl` command; install it"
    d = tmp_path_factory.mktemp("pki")
    (d / "leaf.ext").write_text(LEAF_EXTENSIONS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for cmd in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=invite-batch test CA",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "2", "-out",
         "server.pem", "-extfile", "leaf.ext"],
    ):
        subprocess.run([openssl, *cmd], cwd=d, check=True, capture_output=True, timeout=30)
    return Pki(d)


# ------------------------------------------------------------------ loopback servers

def _pipe(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes (or the server stops)."""
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        while not stop.is_set():
            for key, _ in sel.select(timeout=0.1):
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = src.recv(65536)
                    # Decrypted bytes already inside the TLS object are invisible to select: drain them.
                    while isinstance(src, ssl.SSLSocket) and src.pending():
                        data += src.recv(src.pending())
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                try:
                    key.data.sendall(data)
                except OSError:
                    return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.stop = threading.Event()
        self.lines: list[str] = []  # proxy: request lines seen
        self.connections = 0  # relay: connections whose TLS handshake completed
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that drops the tunnel is part of these tests, not noise

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


class TlsRelay(_Server):
    """TLS on the outside, the plain-HTTP sandbox inside: a provider with a privately signed certificate."""

    def __init__(self, upstream: tuple[str, int], pki: Pki) -> None:
        upstream_addr = upstream

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server: TlsRelay = self.server  # type: ignore[assignment]
                server.connections += 1
                with socket.create_connection(upstream_addr, timeout=5) as up:
                    _pipe(self.request, up, server.stop)

        super().__init__(Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.cert, pki.key)
        # Handshakes happen in accept(); one that the client aborts raises there and is dropped quietly.
        self.socket = ctx.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


class ConnectProxy(_Server):
    """An HTTP proxy that tunnels CONNECT, as HTTPS_PROXY expects, and records each request line.

    It resolves `provider.test` to 127.0.0.1, as a real proxy resolves the provider's public name.
    """

    def __init__(self) -> None:
        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                server: ConnectProxy = self.server  # type: ignore[assignment]
                line = self.rfile.readline().decode("latin-1").strip()
                server.lines.append(line)
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                method, target, _ = line.split(" ", 2)
                if method != "CONNECT":
                    self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                host, port = target.rsplit(":", 1)
                host = "127.0.0.1" if host == "provider.test" else host
                with socket.create_connection((host, int(port)), timeout=5) as up:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    _pipe(self.connection, up, server.stop)

        super().__init__(Handler)


@pytest.fixture
def relay(sandbox: SandboxServer, pki: Pki) -> Iterator[TlsRelay]:
    host, port = sandbox.url.removeprefix("http://").rsplit(":", 1)
    with TlsRelay((host, int(port)), pki) as server:
        yield server


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA variable from the machine running the tests leaks in."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def client(url: str, ca_bundle: str | Path | None = None) -> HttpClient:
    return HttpClient(url, timeouts=Timeouts(connect=5, read=5), retry=RetryPolicy(attempts=3, initial_wait=0.01),
                      limiter=None, workers=1, ca_bundle=str(ca_bundle) if ca_bundle else None)


def get(url: str, ca_bundle: str | Path | None = None) -> int:
    http = client(url, ca_bundle)
    try:
        return http.request("GET", "/_sandbox/ledger", mutating=False).status
    finally:
        http.close()


# ------------------------------------------------------------------ verification

def test_untrusted_certificate_is_refused_at_once(relay: TlsRelay) -> None:
    http = client(relay.url)
    try:
        with pytest.raises(UnreachableError) as exc:  # a certificate does not heal by retrying: the run stops
            http.request("GET", "/_sandbox/ledger", mutating=False)
    finally:
        http.close()
    assert "TLS certificate not trusted" in str(exc.value)
    assert "ca_bundle" in str(exc.value) and exc.value.exit_code == 3
    assert relay.connections == 0  # no handshake completed, so not a byte of the request left


def test_ca_bundle_makes_the_private_ca_trusted(relay: TlsRelay, pki: Pki) -> None:
    assert get(relay.url, pki.ca) == 200
    assert relay.connections == 1


def test_requests_ca_bundle_variable_is_honoured(relay: TlsRelay, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    assert get(relay.url) == 200


@pytest.mark.parametrize("name", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_empty_ca_variables_do_not_turn_verification_off(relay: TlsRelay, monkeypatch: pytest.MonkeyPatch,
                                                         name: str) -> None:
    monkeypatch.setenv(name, "")
    with pytest.raises(UnreachableError, match="TLS certificate not trusted"):
        get(relay.url)


def test_hostname_is_checked(relay: TlsRelay, pki: Pki) -> None:
    """The certificate names 127.0.0.1 only; the same server reached as `localhost` is refused."""
    with pytest.raises(UnreachableError, match="Hostname mismatch"):
        get(f"https://localhost:{relay.port}", pki.ca)
    assert get(f"https://127.0.0.1:{relay.port}", pki.ca) == 200


def test_there_is_no_setting_to_turn_verification_off() -> None:
    base = {"provider": "invoicebox", "auth": {"token": "t"}}
    for key in ("verify", "ssl_verify", "insecure"):
        with pytest.raises(ConfigError) as exc:
            parse_config({**base, key: False}, env={})
        assert exc.value.problems == [f"{key}: unknown key"]


# ------------------------------------------------------------------ proxies

def test_https_proxy_variable_tunnels_and_still_verifies(relay: TlsRelay, pki: Pki,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"https://provider.test:{relay.port}"  # a name only the proxy can resolve, like a provider's
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        assert get(url, pki.ca) == 200
        assert [line.rsplit(" ", 1)[0] for line in proxy.lines] == [f"CONNECT provider.test:{relay.port}"]
        # Through the tunnel the provider's certificate is still checked end to end.
        with pytest.raises(UnreachableError, match="TLS certificate not trusted"):
            get(url)
        assert len(proxy.lines) == 2


def test_plain_http_to_loopback_ignores_proxy_variables(sandbox: SandboxServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy cannot reach our loopback: a corporate HTTP_PROXY must not break the sandbox."""
    with ConnectProxy() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        assert get(sandbox.url) == 200
        assert proxy.lines == []


def test_lowercase_proxy_variable_and_no_proxy(relay: TlsRelay, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    with ConnectProxy() as proxy:
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
        assert get(relay.url, pki.ca) == 200
        assert len(proxy.lines) == 1
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert get(relay.url, pki.ca) == 200
        assert len(proxy.lines) == 1  # bypassed


# ------------------------------------------------------------------ base URLs

@pytest.mark.parametrize(("url", "ok"), [
    ("http://localhost.example.com", False), ("http://127.0.0.1.nip.io:8080", False), ("http://192.168.1.10", False),
    ("http://[::1]:8080", True), ("http://127.0.0.5:9000", True), ("https://doc.edin.ua:8443", True),
], ids=["localhost-lookalike", "loopback-lookalike", "lan", "ipv6-loopback", "loopback-net", "https-port"])
def test_plain_http_only_on_loopback(tmp_path: Path, url: str, ok: bool) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"provider": "invoicebox", "base_url": url, "auth": {"token": "t"}}))
    if ok:
        assert load_config(path, env={}).base_url == url
    else:
        with pytest.raises(ConfigError) as exc:
            load_config(path, env={})
        assert exc.value.problems == [f"base_url: plain http is refused except on loopback (use https): {url!r}"]


# ------------------------------------------------------------------ the whole run, through the config

def _inputs(tmp_path: Path, url: str, **extra: Any) -> tuple[Path, Path]:
    book = tmp_path / "partners.xlsx"
    wb = xlsxwriter.Workbook(str(book))
    ws = wb.add_worksheet()
    for c, text in enumerate(("ЄДРПОУ", "Назва", "Email")):
        ws.write_string(0, c, text)
    for r, row in enumerate([("32855961", "ПП Бета", "info@beta.com.ua"), ("21875300", "ТОВ Гамма", "a@gamma.ua")], 1):
        for c, text in enumerate(row):
            ws.write_string(r, c, text)
    wb.close()
    cfg = tmp_path / "edin.yaml"
    cfg.write_text(yaml.safe_dump({
        "provider": "edin", "base_url": url, "auth": {"email": "demo@example.com", "password": "${PW}"},
        "invite": {"contract_template_id": 5551}, "retry": {"attempts": 2, "initial_wait": 0.01},
        "limits": {"rate": ["100/s"]}, **extra}))
    return book, cfg


def test_run_without_ca_bundle_stops_before_sending(relay: TlsRelay, tmp_path: Path, sandbox: SandboxServer,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PW", "demo-password")
    book, cfg = _inputs(tmp_path, relay.url)
    with caplog.at_level(logging.ERROR, logger="batch"):
        assert main(["run", str(book), "-c", str(cfg), "-q"]) == 3
    assert "TLS certificate not trusted" in caplog.text
    assert sandbox.ledger()["requests"] == 0
    rows = list(openpyxl.load_workbook(tmp_path / "partners.results.xlsx")["Results"].values)
    assert [r[4] for r in rows[1:]] == ["pending", "pending"]


def test_run_with_ca_bundle_sends(relay: TlsRelay, pki: Pki, tmp_path: Path, sandbox: SandboxServer,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "demo-password")
    book, cfg = _inputs(tmp_path, relay.url, ca_bundle=str(pki.ca))
    assert main(["run", str(book), "-c", str(cfg), "-q"]) == 0
    rows = list(openpyxl.load_workbook(tmp_path / "partners.results.xlsx")["Results"].values)
    assert [r[4] for r in rows[1:]] == ["sent", "sent"]
    assert len(sandbox.ledger()["edin"]["partners"]) == 2


def test_missing_ca_bundle_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW", "x")
    book, cfg = _inputs(tmp_path, "https://doc.edin.ua", ca_bundle=str(tmp_path / "corp.pem"))
    assert main(["validate", str(book), "-c", str(cfg), "-q"]) == 2
    assert not (tmp_path / "partners.results.xlsx").exists()


def test_login_that_never_gets_through_stops_resumably(sandbox_factory: Callable[..., SandboxServer],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Every answer a 5xx: the login gives up after its retries; exit 3 (run again), not 2 (fix your input)."""
    monkeypatch.setenv("PW", "demo-password")
    server = sandbox_factory(error_rate=1.0, seed=1)
    book, cfg = _inputs(tmp_path, server.url)
    with caplog.at_level(logging.ERROR, logger="batch"):
        assert main(["run", str(book), "-c", str(cfg), "-q"]) == 3
    assert "could not log in: gave up after 2 attempt(s)" in caplog.text
    rows = list(openpyxl.load_workbook(tmp_path / "partners.results.xlsx")["Results"].values)
    assert [r[4] for r in rows[1:]] == ["pending", "pending"]


def test_invoicebox_untrusted_certificate_stops_the_run_and_charges_no_row(relay: TlsRelay, tmp_path: Path,
                                                                         sandbox: SandboxServer) -> None:
    book = tmp_path / "shops.csv"
    book.write_text("email\na@shops.example\nb@shops.example\nc@shops.example\n", encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "provider": "invoicebox", "base_url": relay.url, "auth": {"token": "sandbox-token"},
        "invite": {"partner_id": "01771534-1a57-f184-dee3-ebeb91dded76"}, "limits": {"rate": []}}))
    assert main(["run", str(book), "-c", str(cfg), "-q"]) == 3
    statuses = [r.split(",")[2] for r in (tmp_path / "shops.results.csv").read_text("utf-8-sig").splitlines()[1:]]
    assert statuses == ["pending"] * 3
    assert sandbox.ledger()["requests"] == 0
    # Nothing was in flight, so the next run sends them all rather than calling them unknown.
    with Journal.open_readonly(tmp_path / "shops.checkpoint.sqlite") as journal:
        assert {item.state.value for item in journal.items().values()} <= {"pending"}
