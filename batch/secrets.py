"""Warn when a config file holds a literal secret that other users can read."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import yaml

log = logging.getLogger("batch.config")

SECRET_KEYS = ("password", "token", "client_secret", "refresh_token")


def literal_secrets(path: Path) -> list[str]:
    """Keys under `auth`, and notification URLs with secrets, written out rather than taken from ${VAR}."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    if not isinstance(data, dict):
        return []
    auth = data.get("auth")
    if not isinstance(auth, dict):
        auth = {}
    found = [f"auth.{k}" for k in SECRET_KEYS if isinstance(auth.get(k), str | int) and "${" not in str(auth[k])]
    return found + _literal_notify_urls(data.get("notify"))


def _literal_notify_urls(notify: object) -> list[str]:
    """`notify[N]` for each notification URL written out with a token or password in it."""
    urls = [notify] if isinstance(notify, str) else notify if isinstance(notify, list) else []
    literal = [(i, u) for i, u in enumerate(urls) if isinstance(u, str) and "${" not in u]
    if not literal:
        return []
    from .notify import has_secret  # Apprise knows which parts of a URL are secret

    return [f"notify[{i}]" for i, url in literal if has_secret(url)]


def warn_if_exposed(path: Path) -> bool:
    """Log a warning (and return True) for a literal secret in a group- or world-readable file."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return False
    keys = literal_secrets(path)
    if keys:
        log.warning("%s holds a literal %s and is readable by other users (mode %o): "
                    "use ${VAR} from the environment, or chmod 600 it", path, " and ".join(keys),
                    stat.S_IMODE(mode))
    return bool(keys)
