"""Command line: argument parsing and exit codes only (SPEC §2, §9)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print("invite-batch: not built yet", args, file=sys.stderr)
    return 2
