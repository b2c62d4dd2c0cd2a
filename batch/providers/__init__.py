"""HTTP clients of the providers; they know their API and nothing about files."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..config import Config
from ..http import HttpClient
from ..ratelimit import RateLimiter
from .edin import EdinClient
from .invoicebox import InvoiceboxClient

log = logging.getLogger("batch.providers")


@dataclass
class Clients:
    """The one provider client a run uses (the other is None)."""

    http: HttpClient
    edin: EdinClient | None = None
    invoicebox: InvoiceboxClient | None = None

    def login(self) -> None:
        if self.edin is not None:
            self.edin.login()

    def logout(self) -> None:
        if self.edin is not None:
            with contextlib.suppress(Exception):  # the session would expire anyway
                self.edin.logout()


@contextlib.contextmanager
def open_clients(config: Config, *, sleep: Callable[[float], None]) -> Iterator[Clients]:
    """Build the limiter, the HTTP session and the provider client; start the embedded sandbox if asked."""
    with contextlib.ExitStack() as stack:
        if config.embedded:
            from ..sandbox import SandboxServer

            server = stack.enter_context(SandboxServer(config.sandbox))
            log.info("embedded sandbox listening on %s", server.url)
            config = dataclasses.replace(config, base_url=server.url)
        limiter = RateLimiter(config.limits.rate, sleep=sleep)
        http = HttpClient(config.base_url, timeouts=config.limits.timeout, retry=config.retry, limiter=limiter,
                          workers=config.limits.workers, ca_bundle=config.ca_bundle, sleep=sleep)
        stack.callback(http.close)
        clients = Clients(http=http)
        if config.provider == "edin":
            assert config.auth.email and config.auth.password
            clients.edin = EdinClient(http, email=config.auth.email, password=config.auth.password)
        else:
            assert config.auth.token
            clients.invoicebox = InvoiceboxClient(http, token=config.auth.token)
        yield clients
