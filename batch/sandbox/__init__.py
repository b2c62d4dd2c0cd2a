"""A local simulator of the EDIN and Invoicebox APIs, with faults on demand and a ledger (SPEC §8).

Written from the providers' documentation only: it imports nothing from `batch.providers` or
`batch.http`, so a client mistake cannot be mirrored here and pass unnoticed.
"""

from .server import SandboxServer, serve

__all__ = ["SandboxServer", "serve"]
