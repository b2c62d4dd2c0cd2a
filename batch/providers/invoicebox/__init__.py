"""Invoicebox (SPEC §1): the profile the registry loads, its client and its one-call flow."""

from .profile import InvoiceboxProvider

__all__ = ["InvoiceboxProvider"]
