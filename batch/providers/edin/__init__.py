"""EDIN DOCflow (SPEC §1): the profile the registry loads, its client and its per-row flows."""

from .profile import EdinProvider

__all__ = ["EdinProvider"]
