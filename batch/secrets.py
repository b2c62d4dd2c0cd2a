"""Warn when a config file holds a literal secret that other users can read."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import yaml

log = logging.getLogger("batch.config")

SECRET_KEYS = ("password", "token")


def literal_secrets(path: Path) -> list[str]:
    """Keys under `auth` whose value is written out rather than taken from ${VAR}."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    auth = data.get("auth") if isinstance(data, dict) else None
    if not isinstance(auth, dict):
        return []
    return [f"auth.{k}" for k in SECRET_KEYS if isinstance(auth.get(k), str | int) and "${" not in str(auth[k])]


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
