"""The one place the page learns which providers exist (for the empty-template downloads): the registry."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..providers import get, names
from ..results import write_template


def template_providers() -> tuple[str, ...]:
    """Every registered provider (entry-point group `invite_batch.providers`); the page names none itself."""
    return names()


def template_bytes(provider: str) -> bytes:
    """The provider's empty .xlsx template, as `invite-batch template PROVIDER` writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "template.xlsx"
        write_template(get(provider), path)
        return path.read_bytes()
