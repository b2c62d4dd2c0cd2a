"""A row's work and its one record: the journal and the result line are written together, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .checkpoint import Item, ItemState, Journal
from .clock import Clock, iso_utc
from .errors import APIError, RetriableAPIError
from .model import Identity, RowResult, Status

STATUS_OF = {ItemState.PENDING: Status.PENDING, ItemState.SENT: Status.SENT, ItemState.SKIPPED: Status.SKIPPED,
             ItemState.FAILED: Status.FAILED, ItemState.UNKNOWN: Status.UNKNOWN,
             ItemState.IN_FLIGHT: Status.UNKNOWN}


class Verdict(StrEnum):
    """How a row ended, for the circuit breaker."""

    OK = "ok"
    REFUSED = "refused"  # the provider answered no (4xx): the service works
    BROKEN = "broken"  # retries ran out or no answer: counts towards the breaker


@dataclass(slots=True)
class Task:
    """A row the runner works on this run: its identity, values, result line and earlier journal item."""

    identity: Identity
    values: dict[str, str]
    result: RowResult
    item: Item | None


def record(journal: Journal, task: Task, state: ItemState, clock: Clock, *, detail: str | None = None,
           error: APIError | None = None) -> None:
    """Commit the row's outcome to the journal and its result line together.

    The flow fills the result line's fields as it learns them (ids, HTTP status, attempts); `detail`
    replaces the line's detail when given, and `error` adds its status, request id and attempts.
    """
    result = task.result
    if error is not None:
        fill_from_error(result, error)
    if detail is not None:
        result.detail = detail
    if state is ItemState.SENT and not result.sent_at:
        result.sent_at = iso_utc(clock.now())
    result.status = STATUS_OF[state]
    journal.finish(task.identity, state=state, detail=result.detail, partner_id=result.partner_id,
                   invitation_id=result.invitation_id, http_status=result.http_status,
                   request_id=result.request_id, attempts=result.attempts, sent_at=result.sent_at,
                   marked=result.marked or None)


def fill_from_error(result: RowResult, err: APIError) -> None:
    result.http_status = err.http_status
    result.attempts += err.attempts
    result.request_id = err.request_id or result.request_id


def describe(err: APIError) -> str:
    """A one-line detail for the results file: the provider's code and message."""
    if isinstance(err, RetriableAPIError):
        status = f"HTTP {err.http_status}" if err.http_status else err.message
        return f"gave up after {err.attempts} attempt(s): {status}"
    head = " ".join(p for p in (f"HTTP {err.http_status}" if err.http_status else "", err.code or "") if p)
    return f"{head}: {err.message}" if head and err.message else head or err.message


def join_detail(*parts: str) -> str:
    """Details side by side (a validation note, then what happened)."""
    return "; ".join(p for p in parts if p)


def done_earlier(state: str) -> str:
    """The detail of a row skipped because an earlier run sent (or skipped) its partner; when is in `sent_at`."""
    return f"{state} in an earlier run"
