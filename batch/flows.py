"""What happens to one row, per provider and action: the journal transitions around each request.

Retry safety (SPEC §6): every request that changes something at the provider is preceded by a
durable `journal.begin(...)`, and its outcome is committed by `journal.finish(...)` once known.
A crash therefore leaves only IN_FLIGHT items, which the next run reconciles:

* EDIN: a created partner's id is committed before its invitation; the search by code finds a
  partner created by a crashed run, so a partner is never created twice. An in-flight invitation
  is checked by looking the partner up: `invitationDate` set means it went through.
* Invoicebox has no look-up: an in-flight or ambiguous invitation becomes `unknown`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from .checkpoint import ItemState, Journal
from .errors import (
    AmbiguousAPIError,
    APIError,
    AuthError,
    FatalAPIError,
    Interrupted,
    RetriableAPIError,
    UnreachableError,
)
from .model import RowResult, Status
from .plan import Task
from .providers.base import Partner
from .providers.edin import EdinClient
from .providers.invoicebox import InvoiceboxClient

log = logging.getLogger("batch.flows")

# How often an ambiguous EDIN invitation is looked up and, when it did not arrive, sent again.
AMBIGUOUS_RESENDS = 2


class Outcome:
    """How a row ended, for the circuit breaker: a server/network failure or not."""

    OK = "ok"
    REFUSED = "refused"  # the provider answered no (4xx): the service works
    BROKEN = "broken"  # retries ran out or no answer: counts towards the breaker


def utc_now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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


def _partner_detail(partner: Partner) -> str:
    when = datetime.fromtimestamp(partner.invitation_date or 0, UTC).date().isoformat()
    return f"already invited on {when}"


class Marker:
    """Collects EDIN partners to mark "invitation sent" and marks them in batches (SPEC §6)."""

    def __init__(self, client: EdinClient, journal: Journal, batch_size: int) -> None:
        self.client, self.journal, self.batch_size = client, journal, batch_size
        self._lock = threading.Lock()
        self._pending: list[tuple[str, int, RowResult | None, bool]] = []
        self.calls = 0

    def add(self, identity: str, partner_id: int, result: RowResult | None, *, counts_as_sent: bool = False) -> None:
        """Queue one partner; a full batch is marked at once by the thread that filled it."""
        with self._lock:
            self._pending.append((identity, partner_id, result, counts_as_sent))
            batch = self._take() if len(self._pending) >= self.batch_size else None
        if batch:
            self._mark(batch)

    def flush(self) -> None:
        with self._lock:
            batch = self._take()
        while batch:
            self._mark(batch)
            with self._lock:
                batch = self._take()

    def _take(self) -> list[tuple[str, int, RowResult | None, bool]]:
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
        return batch

    def _mark(self, batch: list[tuple[str, int, RowResult | None, bool]]) -> None:
        ids = sorted({pid for _, pid, _, _ in batch})
        as_sent = [ident for ident, _, _, sent in batch if sent]
        others = [ident for ident, _, _, sent in batch if not sent]
        self.calls += 1
        try:
            reply = self.client.mark_invited(ids)
        except APIError as err:
            log.warning("marking %d partner(s) failed: %s", len(ids), describe(err))
            detail = f"mark failed: {describe(err)}"
            self.journal.set_marked(others, "failed")
            for ident in as_sent:
                self.journal.finish(ident, state=ItemState.FAILED, marked="failed", detail=detail,
                                    http_status=err.http_status, request_id=err.request_id or "")
            for _, _, result, sent in batch:
                if result is not None:
                    result.marked = "failed"
                    if sent:
                        result.status, result.detail = Status.FAILED, detail
                        fill_from_error(result, err)
            return
        now = utc_now_iso()
        self.journal.set_marked(others, "yes")
        for ident in as_sent:
            self.journal.finish(ident, state=ItemState.SENT, marked="yes", sent_at=now,
                                http_status=reply.status, request_id=reply.request_id)
        for _, _, result, sent in batch:
            if result is not None:
                result.marked = "yes"
                if sent:
                    result.status, result.sent_at = Status.SENT, now
                    result.http_status, result.request_id = reply.status, reply.request_id
                    result.attempts += reply.attempts


class EdinInvite:
    """Resolve (look up or create) the partner, invite it, queue it for marking."""

    def __init__(self, client: EdinClient, journal: Journal, marker: Marker | None, *,
                 create_missing: bool, skip_already_invited: bool,
                 should_stop: Callable[[], bool]) -> None:
        self.client, self.journal, self.marker = client, journal, marker
        self.create_missing, self.skip_already_invited = create_missing, skip_already_invited
        self.should_stop = should_stop

    def __call__(self, task: Task) -> str:
        values, result, item = task.values, task.result, task.item
        # An invitation in flight, or a failed/unknown row tried again (--retry-failed, --resend-unknown), may
        # have arrived: look the partner up before inviting it again.
        reconcile = item is not None and (item.state is ItemState.IN_FLIGHT and item.step == "invite" or (
            item.state in (ItemState.FAILED, ItemState.UNKNOWN) and bool(item.partner_id)))
        partner_id = int(values["partner_id"]) if "partner_id" in values else None
        if partner_id is None and item is not None and item.partner_id:
            partner_id = int(item.partner_id)
        partner: Partner | None = None
        try:
            if partner_id is None or reconcile:
                partner = self._resolve(task, partner_id)
                if partner is None:
                    return Outcome.REFUSED
                partner_id = partner.partner_id
            result.partner_id = str(partner_id)
            if partner is not None and partner.invitation_date:
                if reconcile:
                    return self._sent(task, partner_id, None, "confirmed by look-up after an interrupted run")
                if self.skip_already_invited:
                    result.status, result.detail = Status.SKIPPED, _partner_detail(partner)
                    self.journal.finish(task.identity, state=ItemState.SKIPPED, partner_id=str(partner_id),
                                        detail=result.detail)
                    return Outcome.OK
            return self._invite(task, partner_id)
        except FatalAPIError as err:
            return self._failed(task, err, Outcome.REFUSED, partner_id)
        except (RetriableAPIError, AmbiguousAPIError) as err:  # ambiguous: a creation the look-up did not find
            return self._failed(task, err, Outcome.BROKEN, partner_id)

    def _resolve(self, task: Task, partner_id: int | None) -> Partner | None:
        """Find the partner by code (or id); create it when missing and allowed."""
        values, result = task.values, task.result
        code = values.get("code")
        if partner_id is not None:
            partner = self.client.find_partner_by_id(partner_id, code)
            if partner is None:
                self._finish_failed(task, f"partner id {partner_id} not found on EDIN")
            return partner
        assert code is not None  # validation guarantees partner_id or code
        partner = self.client.find_partner_by_code(code)
        if partner is not None:
            return partner
        if not self.create_missing:
            self._finish_failed(task, f"partner with code {code} not found on EDIN (create_missing_partners is off)")
            return None
        missing = [f for f in ("name", "email") if not values.get(f)]
        if missing:
            # Not journaled: once the operator fills the cells in, the next run simply tries again.
            result.status = Status.INVALID
            result.detail = (f"partner with code {code} is not on EDIN yet; creating it needs "
                             f"{' and '.join(missing)}")
            return None
        if self.should_stop():
            return None
        self.journal.begin(task.identity, step="create")
        try:
            created = self.client.create_partner(
                code=code, name=values["name"], email=values["email"], contact_person=values.get("contact_person"),
                phone=values.get("phone"), comment=values.get("comment"))
        except (Interrupted, UnreachableError):
            # A wait between tries, or no safe connection: nothing outstanding; pending (next run: look-up first).
            self.journal.finish(task.identity, state=ItemState.PENDING)
            raise
        except AmbiguousAPIError:
            # The answer was lost, maybe not the partner: the search by code tells (never create twice).
            found = self.client.find_partner_by_code(code)
            if found is None:
                raise
            created = found
        self.journal.record_partner(task.identity, str(created.partner_id))
        result.detail = "; ".join(d for d in (result.detail, "partner created") if d)  # keep validation notes
        return created

    def _invite(self, task: Task, partner_id: int) -> str:
        values, result = task.values, task.result
        template = int(values["contract_template_id"]) if "contract_template_id" in values else None
        owner = int(values["owner_company_id"]) if "owner_company_id" in values else None
        for attempt in range(AMBIGUOUS_RESENDS + 1):
            if self.should_stop():
                # Left pending. A creation before this point is done and its id recorded: no longer in flight.
                current = self.journal.get(task.identity) if attempt == 0 else None
                if current is not None and current.state is ItemState.IN_FLIGHT and current.step == "create":
                    self.journal.finish(task.identity, state=ItemState.PENDING, partner_id=str(partner_id))
                return Outcome.OK
            self.journal.begin(task.identity, step="invite", partner_id=str(partner_id))
            try:
                reply = self.client.send_invitation(partner_id, contract_template_id=template,
                                                    owner_company_id=owner)
            except (Interrupted, UnreachableError):
                # A wait between tries, or no safe connection at all: no request is outstanding.
                self.journal.finish(task.identity, state=ItemState.PENDING, partner_id=str(partner_id))
                raise
            except AmbiguousAPIError as err:
                fill_from_error(result, err)
                log.info("row %d: no answer to the invitation; looking partner %d up", result.line, partner_id)
                partner = self.client.find_partner_by_id(partner_id, values.get("code"))
                if partner is not None and partner.invitation_date:
                    return self._sent(task, partner_id, None, "confirmed by look-up after a lost answer")
                if attempt == AMBIGUOUS_RESENDS:
                    self.journal.finish(task.identity, state=ItemState.UNKNOWN, partner_id=str(partner_id),
                                        detail=describe(err))
                    result.status, result.detail = Status.UNKNOWN, f"no answer: {describe(err)}"
                    return Outcome.BROKEN
                continue
            result.http_status, result.request_id = reply.status, reply.request_id
            result.attempts += reply.attempts
            return self._sent(task, partner_id, reply.status, "")
        raise AssertionError("unreachable")

    def _sent(self, task: Task, partner_id: int, http_status: int | None, detail: str) -> str:
        result = task.result
        result.status, result.sent_at = Status.SENT, utc_now_iso()
        result.detail = "; ".join(d for d in (result.detail, detail) if d)
        marked = "no" if self.marker is not None else ""
        result.marked = marked
        self.journal.finish(task.identity, state=ItemState.SENT, partner_id=str(partner_id), detail=result.detail,
                            http_status=http_status, request_id=result.request_id, attempts=result.attempts,
                            sent_at=result.sent_at, marked=marked)
        if self.marker is not None:
            self.marker.add(task.identity, partner_id, result)
        return Outcome.OK

    def _finish_failed(self, task: Task, detail: str) -> None:
        task.result.status, task.result.detail = Status.FAILED, detail
        self.journal.finish(task.identity, state=ItemState.FAILED, detail=detail)

    def _failed(self, task: Task, err: APIError, outcome: str, partner_id: int | None) -> str:
        result = task.result
        fill_from_error(result, err)
        result.status, result.detail = Status.FAILED, describe(err)
        self.journal.finish(task.identity, state=ItemState.FAILED, detail=result.detail,
                            partner_id=str(partner_id or ""), http_status=err.http_status,
                            request_id=err.request_id or "", attempts=result.attempts)
        return outcome


class EdinMark:
    """Mark-only job: resolve the partner (never create it), then mark it in a batch."""

    def __init__(self, client: EdinClient, journal: Journal, marker: Marker) -> None:
        self.client, self.journal, self.marker = client, journal, marker

    def __call__(self, task: Task) -> str:
        values, result = task.values, task.result
        try:
            if "partner_id" in values:
                partner_id = int(values["partner_id"])
            else:
                partner = self.client.find_partner_by_code(values["code"])
                if partner is None:
                    result.status = Status.FAILED
                    result.detail = f"partner with code {values['code']} not found on EDIN"
                    self.journal.finish(task.identity, state=ItemState.FAILED, detail=result.detail)
                    return Outcome.REFUSED
                partner_id = partner.partner_id
        except APIError as err:
            fill_from_error(result, err)
            result.status, result.detail = Status.FAILED, describe(err)
            self.journal.finish(task.identity, state=ItemState.FAILED, detail=result.detail)
            return Outcome.BROKEN if isinstance(err, RetriableAPIError) else Outcome.REFUSED
        result.partner_id = str(partner_id)
        # Marking is idempotent (it sets a status), so an in-flight mark is simply sent again.
        self.journal.begin(task.identity, step="mark", partner_id=str(partner_id))
        self.marker.add(task.identity, partner_id, result, counts_as_sent=True)
        return Outcome.OK


class InvoiceboxInvite:
    """One POST per row; a lost answer cannot be checked, so it is `unknown`."""

    def __init__(self, client: InvoiceboxClient, journal: Journal, *, should_stop: Callable[[], bool]) -> None:
        self.client, self.journal, self.should_stop = client, journal, should_stop

    def __call__(self, task: Task) -> str:
        values, result = task.values, task.result
        if self.should_stop():
            return Outcome.OK
        self.journal.begin(task.identity, step="invite")
        try:
            inv = self.client.invite(partner_id=values["partner_id"], email=values["email"])
        except (Interrupted, UnreachableError):
            # A wait between tries, or no safe connection at all: no request is outstanding.
            self.journal.finish(task.identity, state=ItemState.PENDING)
            raise
        except AmbiguousAPIError as err:
            fill_from_error(result, err)
            result.status = Status.UNKNOWN
            result.detail = f"no answer after sending, may have been delivered ({describe(err)})"
            self.journal.finish(task.identity, state=ItemState.UNKNOWN, detail=result.detail,
                                request_id=result.request_id, attempts=result.attempts)
            return Outcome.BROKEN
        except (FatalAPIError, RetriableAPIError) as err:
            if err.http_status == 401:
                # A static token that is refused fails every row alike: stop, charge no row (SPEC §7).
                self.journal.finish(task.identity, state=ItemState.PENDING)
                raise AuthError("Invoicebox refused the token (401 unauthorized); check auth.token") from None
            fill_from_error(result, err)
            result.status, result.detail = Status.FAILED, describe(err)
            self.journal.finish(task.identity, state=ItemState.FAILED, detail=result.detail,
                                http_status=err.http_status, request_id=err.request_id or "",
                                attempts=result.attempts)
            return Outcome.BROKEN if isinstance(err, RetriableAPIError) else Outcome.REFUSED
        result.status, result.sent_at = Status.SENT, utc_now_iso()
        result.invitation_id, result.request_id = inv.invitation_id, inv.request_id
        result.http_status, result.attempts = inv.http_status, result.attempts + inv.attempts
        self.journal.finish(task.identity, state=ItemState.SENT, invitation_id=inv.invitation_id,
                            http_status=inv.http_status, request_id=inv.request_id, attempts=result.attempts,
                            sent_at=result.sent_at)
        return Outcome.OK
