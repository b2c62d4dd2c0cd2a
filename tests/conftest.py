"""Shared fixtures: the real sandbox server on a free loopback port, for every integration test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batch.config import SandboxOptions, parse_rate
from batch.sandbox import SandboxServer


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A started sandbox with default options (no faults); `sandbox.url` is its base URL."""
    with SandboxServer() as server:
        yield server


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    """`sandbox_factory(error_rate=0.5, seed=1, rate_limit="5/s", clock=fake)` → a started sandbox.

    Takes SandboxOptions fields as keywords (`rate_limit` also as "5/s" or a list of such,
    `partners` also as a Path) plus an optional `clock`; every server is stopped at teardown.
    """
    servers: list[SandboxServer] = []

    def start(*, clock: Callable[[], float] = time.monotonic, **options: Any) -> SandboxServer:
        rate = options.get("rate_limit")
        if isinstance(rate, str):
            rate = [rate]
        if rate is not None:
            options["rate_limit"] = tuple(parse_rate(r) if isinstance(r, str) else r for r in rate)
        if isinstance(options.get("partners"), Path):
            options["partners"] = str(options["partners"])
        server = SandboxServer(SandboxOptions(**options), clock=clock)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
