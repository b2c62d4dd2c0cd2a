"""Small helpers several test files share (pytest puts tests/ on the import path)."""

from __future__ import annotations

import random

from batch.validation import edrpou_valid


def edrpou_codes(n: int, rng: random.Random) -> list[str]:
    """`n` distinct EDRPOU codes with valid check digits (no leading zero, so no padding notes)."""
    codes: list[str] = []
    while len(codes) < n:
        stem = str(rng.randint(1_000_000, 9_999_999))
        code = next((stem + d for d in "0123456789" if edrpou_valid(stem + d)), None)
        if code and code not in codes:
            codes.append(code)
    return codes
