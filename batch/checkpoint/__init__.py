"""The checkpoint (SPEC §6): the SQLite journal behind resume, its records, and its files (journal.py says more)."""

from .files import IN_FLIGHT_DETAIL, SCHEMA_VERSION, set_aside
from .journal import Journal
from .records import (
    STATES,
    Item,
    ItemOutcome,
    ItemState,
    JournalStatus,
    ReportRow,
    RunInfo,
    RunRecord,
    SavedRow,
)

__all__ = ["IN_FLIGHT_DETAIL", "SCHEMA_VERSION", "STATES", "Item", "ItemOutcome", "ItemState", "Journal",
           "JournalStatus", "ReportRow", "RunInfo", "RunRecord", "SavedRow", "set_aside"]
