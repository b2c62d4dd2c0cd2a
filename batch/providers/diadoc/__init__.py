"""Kontur.Diadoc (SPEC §13): the profile the registry loads, its OIDC client and its per-row flow."""

from .profile import DiadocProvider

__all__ = ["DiadocProvider"]
