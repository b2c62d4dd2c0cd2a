"""The one place the page learns which providers exist (for the empty-template downloads).

Retarget this function at the provider registry (entry-point group `invite_batch.providers`) when it lands;
nothing else in `batch/ui` names a provider.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..results import TEMPLATE_COLUMNS, write_template


def template_providers() -> tuple[str, ...]:
    """Every provider an empty input template can be written for."""
    return tuple(TEMPLATE_COLUMNS)


def template_bytes(provider: str) -> bytes:
    """The provider's empty .xlsx template, as `invite-batch template PROVIDER` writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "template.xlsx"
        write_template(provider, path)
        return path.read_bytes()
