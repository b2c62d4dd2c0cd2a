"""A local simulator of the EDIN, Invoicebox and Diadoc APIs, with faults on demand and a ledger (SPEC §8, §13.6).

Written from the providers' documentation only: it imports nothing from `batch.providers` or
`batch.http`, so a client mistake cannot be mirrored here and pass unnoticed.
"""

from .server import SandboxServer, serve

__all__ = ["SandboxServer", "serve"]
