"""The provider registry: every provider is found through the entry-point group `invite_batch.providers`.

The built-in ones register in this package's own `pyproject.toml`, exactly as a provider living in another
distribution would; the core asks this module, never a provider package, for what it needs.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points

from ..errors import UsageError
from .base import Provider

GROUP = "invite_batch.providers"

log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: dict[str, Provider] | None = None


def providers() -> dict[str, Provider]:
    """Every registered provider by name, loaded once (a broken plug-in is logged and left out)."""
    global _loaded
    with _lock:
        if _loaded is None:
            found: dict[str, Provider] = {}
            for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
                try:
                    profile = ep.load()()
                except Exception as e:  # another package's bug must not stop every run
                    log.warning("provider %s (%s) could not be loaded: %s", ep.name, ep.value, e)
                    continue
                if not isinstance(profile, Provider) or profile.name != ep.name:
                    log.warning("provider %s (%s) is not a Provider named %r; left out", ep.name, ep.value, ep.name)
                    continue
                found[ep.name] = profile
            _loaded = found
        return _loaded


def names() -> tuple[str, ...]:
    return tuple(providers())


def get(name: str) -> Provider:
    """The provider called `name`; UsageError naming the choices when there is none."""
    found = providers().get(name)
    if found is None:
        raise UsageError(f"unknown provider {name!r}; expected one of: {', '.join(names()) or '(none installed)'}")
    return found


def reload() -> None:
    """Forget the loaded providers, so the next call looks at the installed entry points again (tests)."""
    global _loaded
    with _lock:
        _loaded = None
