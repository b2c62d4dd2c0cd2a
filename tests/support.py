"""Small helpers several test files share (pytest puts tests/ on the import path)."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from batch import providers
from batch.providers.base import Identity
from batch.providers.edin.rules import edrpou_valid

IB_PARTNER = "01771534-1a57-f184-dee3-ebeb91dded76"  # the Invoicebox partner write_config invites for
FAST_RETRY = {"attempts": 4, "initial_wait": 0.01, "max_wait": 0.05, "max_retry_after": 1}


def fields_of(provider: str) -> dict[str, Any]:
    """`read_table`'s field arguments for a registered provider: `read_table(path, **fields_of("edin"))`."""
    profile = providers.get(provider)
    return {"fields": profile.fields, "required": profile.required}


def identity_of(provider: str, **values: str) -> Identity:
    """The identity the provider's profile gives a valid row with these values."""
    return providers.get(provider).identity(values)


def edrpou_codes(n: int, rng: random.Random) -> list[str]:
    """`n` distinct EDRPOU codes with valid check digits (no leading zero, so no padding notes)."""
    codes: list[str] = []
    while len(codes) < n:
        stem = str(rng.randint(1_000_000, 9_999_999))
        code = next((stem + d for d in "0123456789" if edrpou_valid(stem + d)), None)
        if code and code not in codes:
            codes.append(code)
    return codes


def write_config(path: Path, url: str, provider: str = "edin", **sections: Any) -> Path:
    """A config for `provider` at `url` (the sandbox's demo account, fast retries); `sections` override keys."""
    data: dict[str, Any] = {"provider": provider, "base_url": url, "retry": dict(FAST_RETRY),
                            "limits": {"workers": 4, "rate": []}}
    if provider == "edin":
        data["auth"] = {"email": "demo@example.com", "password": "demo-password"}
        data["invite"] = {"contract_template_id": 5551}
    else:
        data["auth"] = {"token": "sandbox-token"}
        data["invite"] = {"partner_id": IB_PARTNER}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@contextlib.contextmanager
def sandbox_process(*options: str) -> Iterator[str]:
    """`invite-batch sandbox OPTIONS` in its own process: yields the URL it prints; at the end it must stop on
    SIGTERM with exit 0 (killed if it does not)."""
    proc = subprocess.Popen([sys.executable, "-m", "batch", "sandbox", *options], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
