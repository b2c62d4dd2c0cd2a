"""invite-batch: invite every partner in a spreadsheet to an e-document platform, safely and resumably."""

__version__ = "0.1.0"
