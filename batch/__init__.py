"""invite-batch: invite every partner in a spreadsheet to EDIN DOCflow or Invoicebox, safely and resumably."""

__version__ = "0.1.0"
