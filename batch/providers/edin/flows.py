"""What happens to one EDIN row: the journal transitions around each request, and the batched status marks.

Retry safety (SPEC §6, §7): every request that changes something is preceded by a durable `journal.begin`,
and its outcome is committed by `outcome.record` once known, so a crash leaves only in-flight items, which
the next run reconciles:

* A created partner's id is committed before its invitation, and the partner is always searched by code
  before it is created — also after a creation whose answer was lost — so it is never created twice.
* An invitation whose answer was lost, or one left in flight, is settled by looking the partner up: its
  `invitationDate` set means it arrived. That rests on an assumption the docs do not state — that the
  invitation (not the later "invitation sent" mark) sets the date — so `DateCheck` tests it once per
  checkpoint; under the other reading such rows become `unknown` instead of being sent again. A row whose
  settling needs the answer before it is known waits, in flight, until the other rows are done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ...checkpoint import ItemState, Journal
from ...clock import Clock
from ...config import Config
from ...errors import AmbiguousAPIError, APIError, FatalAPIError, Interrupted, RetriableAPIError, UnreachableError
from ...http import HttpClient
from ...model import Status
from ...outcome import Task, Verdict, describe, fill_from_error, join_detail, record
from ..base import Session
from .client import EdinClient, Partner
from .profile import EdinAuth

log = logging.getLogger(__name__)

# How often an ambiguous invitation is looked up and, when it did not arrive, sent again.
AMBIGUOUS_RESENDS = 2
# What the checkpoint keeps about which call sets invitationDate (SPEC §6): "invite" or "mark".
DATE_FACT = "edin.invitation_date_set_by"


class EdinSession(Session):
    """One run against one EDIN account: log in, work rows (invite or mark-only), mark in batches, log out."""

    def __init__(self, config: Config, http: HttpClient, journal: Journal, clock: Clock,
                 should_stop: Callable[[], bool]) -> None:
        auth, invite = config.auth, config.invite
        assert isinstance(auth, EdinAuth)
        self.client = EdinClient(http, email=auth.email, password=auth.password)
        needs_marks = config.action == "mark" or invite.mark_status
        self.marker = Marker(self.client, journal, clock, invite.status_batch_size) if needs_marks else None
        self.flow: Callable[[Task], Verdict]
        if config.action == "mark":
            assert self.marker is not None
            self.flow = MarkOnly(self.client, journal, clock, self.marker)
        else:
            check = DateCheck(self.client, journal)
            self.flow = Invite(self.client, journal, clock, self.marker, check,
                               create_missing=invite.create_missing_partners,
                               skip_already_invited=invite.skip_already_invited,
                               resend_ambiguous=config.retry.ambiguous == "resend", should_stop=should_stop)

    def open(self) -> None:
        self.client.login()

    def handle(self, task: Task) -> Verdict:
        return self.flow(task)

    def owed(self, followups: Sequence[Task]) -> None:
        if self.marker is not None:
            for task in followups:
                self.marker.add(task)

    def finish(self) -> None:
        if isinstance(self.flow, Invite):
            self.flow.settle_deferred()
        if self.marker is not None:
            self.marker.flush()

    def close(self) -> None:
        self.client.logout()


class Marker:
    """Collects partners to mark "invitation sent" and marks them in batches (SPEC §6)."""

    def __init__(self, client: EdinClient, journal: Journal, clock: Clock, batch_size: int) -> None:
        self.client, self.journal, self.clock, self.batch_size = client, journal, clock, batch_size
        self._lock = threading.Lock()
        self._pending: list[tuple[Task, bool]] = []

    def add(self, task: Task, *, counts_as_sent: bool = False) -> None:
        """Queue one row's partner (`result.partner_id`); a full batch is marked at once by the thread that filled
        it. `counts_as_sent`: the mark-only job, where the mark is the row's outcome."""
        with self._lock:
            self._pending.append((task, counts_as_sent))
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

    def _take(self) -> list[tuple[Task, bool]]:
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
        return batch

    def _mark(self, batch: list[tuple[Task, bool]]) -> None:
        ids = sorted({int(task.result.partner_id) for task, _ in batch})
        others = [task.identity.key for task, sent in batch if not sent]
        try:
            reply = self.client.mark_invited(ids)
        except APIError as err:
            log.warning("marking %d partner(s) failed: %s", len(ids), describe(err))
            self.journal.set_marked(others, "failed")
            for task, sent in batch:
                task.result.marked = "failed"
                if sent:
                    record(self.journal, task, ItemState.FAILED, self.clock, detail=f"mark failed: {describe(err)}",
                           error=err)
            return
        self.journal.set_marked(others, "yes")
        for task, sent in batch:
            task.result.marked = "yes"
            if sent:
                result = task.result
                result.http_status, result.request_id = reply.status, reply.request_id
                result.attempts += reply.attempts
                record(self.journal, task, ItemState.SENT, self.clock)


class DateCheck:
    """Which call sets a partner's invitationDate: found once per checkpoint, after the first invitation that
    was answered 200, by looking that partner up (SPEC §6), and kept in the checkpoint."""

    def __init__(self, client: EdinClient, journal: Journal) -> None:
        self.client, self.journal = client, journal
        self._lock = threading.Lock()
        self.set_by = journal.fact(DATE_FACT)
        if self.set_by == "mark":
            _warn_mark_reading()

    def after_invitation(self, partner_id: int, dated_before: bool | None) -> None:
        """Settle the question with a partner whose invitation was just answered 200 and that had no date before
        (`dated_before` None: not looked up, so it cannot tell)."""
        if self.set_by is not None or dated_before is not False:
            return
        with self._lock:
            if self.set_by is not None:
                return
            partner = self.client.find_partner_by_id(partner_id)
            if partner is None:  # cannot tell from this one; the next answered invitation tries again
                return
            self.set_by = "invite" if partner.invitation_date else "mark"
            self.journal.set_fact(DATE_FACT, self.set_by)
        log.info("EDIN sets invitationDate on the %s call (checked once for this checkpoint)",
                 "invitation" if self.set_by == "invite" else "status mark")
        if self.set_by == "mark":
            _warn_mark_reading()

    def settles_by_lookup(self) -> bool | None:
        """Whether a look-up can settle an invitation whose answer was lost; None while it is not known yet."""
        return None if self.set_by is None else self.set_by == "invite"


def _warn_mark_reading() -> None:
    log.warning("EDIN sets a partner's invitationDate only when it is marked \"invitation sent\", not when it is "
                "invited: a look-up cannot tell whether an invitation whose answer was lost arrived, so such rows "
                "become `unknown` (check them in EDIN, then --resend-unknown) instead of being sent again")


UNSETTLED: dict[bool | None, str] = {
    False: ("EDIN sets invitationDate only on the status mark, so a look-up cannot tell whether it arrived: "
            "check the partner in EDIN, then --resend-unknown if it did not"),
    None: ("not yet confirmed that EDIN's invitationDate shows an arrived invitation, so a look-up cannot tell "
           "whether it arrived: check the partner in EDIN, then --resend-unknown if it did not"),
}


class Invite:
    """Resolve (look up or create) the partner, invite it, queue it for marking."""

    def __init__(self, client: EdinClient, journal: Journal, clock: Clock, marker: Marker | None, check: DateCheck,
                 *, create_missing: bool, skip_already_invited: bool, resend_ambiguous: bool,
                 should_stop: Callable[[], bool]) -> None:
        self.client, self.journal, self.clock, self.marker, self.check = client, journal, clock, marker, check
        self.create_missing, self.skip_already_invited = create_missing, skip_already_invited
        self.resend_ambiguous = resend_ambiguous
        self.should_stop = should_stop
        # Rows left in flight until DateCheck knows whether a look-up can settle them:
        # (task, partner id, why, the result's detail before).
        self._deferred: list[tuple[Task, int, str, str]] = []
        self._deferred_lock = threading.Lock()

    def __call__(self, task: Task) -> Verdict:
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
                found = self._resolve(task, partner_id)
                if isinstance(found, Verdict):
                    return found
                partner, partner_id = found, found.partner_id
            result.partner_id = str(partner_id)
            if partner is not None and partner.invitation_date:
                if reconcile:
                    return self._sent(task, "confirmed by look-up after an interrupted run")
                if self.skip_already_invited:
                    record(self.journal, task, ItemState.SKIPPED, self.clock, detail=_already_invited(partner))
                    return Verdict.OK
            elif reconcile and item is not None and item.state is ItemState.IN_FLIGHT and not self.resend_ambiguous:
                why = "in flight when an earlier run stopped"
                settles = self.check.settles_by_lookup()
                if settles is None:
                    return self._defer(task, partner_id, why)
                if not settles:  # no date proves nothing here: sending again could duplicate
                    return self._unknown(task, join_detail(why, UNSETTLED[settles]))
            return self._invite(task, partner_id, dated=None if partner is None else bool(partner.invitation_date))
        except FatalAPIError as err:
            return self._failed(task, err, Verdict.REFUSED)
        except (RetriableAPIError, AmbiguousAPIError) as err:  # ambiguous: a creation the look-up did not find
            return self._failed(task, err, Verdict.BROKEN)

    def _resolve(self, task: Task, partner_id: int | None) -> Partner | Verdict:
        """Find the partner by code (or id); create it when missing and allowed. A Verdict when the row ended here:
        not found (REFUSED, recorded), its cells cannot create it (REFUSED, `invalid`), or the run stops (OK)."""
        values = task.values
        code = values.get("code")
        if partner_id is not None:
            partner = self.client.find_partner_by_id(partner_id, code)
            if partner is None:
                record(self.journal, task, ItemState.FAILED, self.clock,
                       detail=f"partner id {partner_id} not found on EDIN")
                return Verdict.REFUSED
            return partner
        assert code is not None  # validation guarantees partner_id or code
        partner = self.client.find_partner_by_code(code)
        if partner is not None:
            return partner
        if not self.create_missing:
            record(self.journal, task, ItemState.FAILED, self.clock,
                   detail=f"partner with code {code} not found on EDIN (create_missing_partners is off)")
            return Verdict.REFUSED
        missing = [f for f in ("name", "email") if not values.get(f)]
        if missing:
            # Not journaled: once the operator fills the cells in, the next run simply tries again.
            task.result.status = Status.INVALID
            task.result.detail = (f"partner with code {code} is not on EDIN yet; creating it needs "
                                  f"{' and '.join(missing)}")
            return Verdict.REFUSED
        if self.should_stop():
            return Verdict.OK  # left pending
        self.journal.begin(task.identity, step="create")
        try:
            created = self.client.create_partner(
                code=code, name=values["name"], email=values["email"], contact_person=values.get("contact_person"),
                phone=values.get("phone"), comment=values.get("comment"))
        except (Interrupted, UnreachableError):
            # A wait between tries, or no safe connection: nothing outstanding; pending (next run: look-up first).
            record(self.journal, task, ItemState.PENDING, self.clock)
            raise
        except AmbiguousAPIError:
            # The answer was lost, maybe not the partner: the search by code tells (never create twice).
            found = self.client.find_partner_by_code(code)
            if found is None:
                raise
            created = found
        self.journal.record_partner(task.identity, str(created.partner_id))
        task.result.detail = join_detail(task.result.detail, "partner created")  # keep validation notes
        return created

    def _invite(self, task: Task, partner_id: int, *, dated: bool | None) -> Verdict:
        values, result = task.values, task.result
        template = int(values["contract_template_id"]) if "contract_template_id" in values else None
        owner = int(values["owner_company_id"]) if "owner_company_id" in values else None
        for attempt in range(AMBIGUOUS_RESENDS + 1):
            if self.should_stop():
                # Left pending. A creation before this point is done and its id recorded: no longer in flight.
                current = self.journal.get(task.identity.key) if attempt == 0 else None
                if current is not None and current.state is ItemState.IN_FLIGHT and current.step == "create":
                    record(self.journal, task, ItemState.PENDING, self.clock)
                return Verdict.OK
            self.journal.begin(task.identity, step="invite", partner_id=str(partner_id))
            try:
                reply = self.client.send_invitation(partner_id, contract_template_id=template,
                                                    owner_company_id=owner)
            except (Interrupted, UnreachableError):
                # A wait between tries, or no safe connection at all: no request is outstanding.
                record(self.journal, task, ItemState.PENDING, self.clock)
                raise
            except AmbiguousAPIError as err:
                fill_from_error(result, err)
                verdict = self._settle(task, partner_id, err, last=attempt == AMBIGUOUS_RESENDS)
                if verdict is not None:
                    return verdict
                continue
            result.http_status, result.request_id = reply.status, reply.request_id
            result.attempts += reply.attempts
            self.check.after_invitation(partner_id, dated)
            return self._sent(task, "")
        raise AssertionError("unreachable")

    def _settle(self, task: Task, partner_id: int, err: AmbiguousAPIError, *, last: bool) -> Verdict | None:
        """After an invitation whose answer was lost: its outcome, or None to send it again."""
        log.info("row %d: no answer to the invitation; looking partner %d up", task.result.line, partner_id)
        partner = self.client.find_partner_by_id(partner_id, task.values.get("code"))
        if partner is not None and partner.invitation_date:
            return self._sent(task, "confirmed by look-up after a lost answer")
        why = f"no answer: {describe(err)}"
        if not self.resend_ambiguous:
            settles = self.check.settles_by_lookup()
            if settles is None:
                return self._defer(task, partner_id, why)
            if not settles:
                return self._unknown(task, join_detail(why, UNSETTLED[settles]))
        return self._unknown(task, why) if last else None

    def _defer(self, task: Task, partner_id: int, why: str) -> Verdict:
        """Leave the row in flight until the other rows are done: an answered invitation will tell by then
        whether a look-up can settle it (settle_deferred). Its result says so meanwhile."""
        with self._deferred_lock:
            self._deferred.append((task, partner_id, why, task.result.detail))
        task.result.status, task.result.detail = Status.UNKNOWN, join_detail(why, UNSETTLED[None])
        return Verdict.OK

    def settle_deferred(self) -> None:
        """Settle the rows _defer kept back, now that the other rows are done (sequentially: they are few)."""
        with self._deferred_lock:
            deferred, self._deferred = self._deferred, []
        for task, partner_id, why, detail in deferred:
            task.result.status, task.result.detail = Status.PENDING, detail
            try:
                partner = self.client.find_partner_by_id(partner_id, task.values.get("code"))
                if partner is not None and partner.invitation_date:
                    self._sent(task, "confirmed by look-up")
                    continue
                settles = self.check.settles_by_lookup()
                if not settles:  # still unknown (no invitation was answered this run), or the mark sets it
                    self._unknown(task, join_detail(why, UNSETTLED[settles]))
                    continue
                self._invite(task, partner_id, dated=False)
            except FatalAPIError as err:
                self._failed(task, err, Verdict.REFUSED)
            except (RetriableAPIError, AmbiguousAPIError) as err:
                self._failed(task, err, Verdict.BROKEN)

    def _sent(self, task: Task, detail: str) -> Verdict:
        result = task.result
        result.marked = "no" if self.marker is not None else ""
        record(self.journal, task, ItemState.SENT, self.clock, detail=join_detail(result.detail, detail))
        if self.marker is not None:
            self.marker.add(task)
        return Verdict.OK

    def _unknown(self, task: Task, detail: str) -> Verdict:
        record(self.journal, task, ItemState.UNKNOWN, self.clock, detail=detail)
        return Verdict.BROKEN

    def _failed(self, task: Task, err: APIError, verdict: Verdict) -> Verdict:
        record(self.journal, task, ItemState.FAILED, self.clock, detail=describe(err), error=err)
        return verdict


class MarkOnly:
    """Mark-only job: resolve the partner (never create it), then mark it in a batch."""

    def __init__(self, client: EdinClient, journal: Journal, clock: Clock, marker: Marker) -> None:
        self.client, self.journal, self.clock, self.marker = client, journal, clock, marker

    def __call__(self, task: Task) -> Verdict:
        values, result = task.values, task.result
        try:
            if "partner_id" in values:
                partner_id = int(values["partner_id"])
            else:
                partner = self.client.find_partner_by_code(values["code"])
                if partner is None:
                    record(self.journal, task, ItemState.FAILED, self.clock,
                           detail=f"partner with code {values['code']} not found on EDIN")
                    return Verdict.REFUSED
                partner_id = partner.partner_id
        except APIError as err:
            record(self.journal, task, ItemState.FAILED, self.clock, detail=describe(err), error=err)
            return Verdict.BROKEN if isinstance(err, RetriableAPIError) else Verdict.REFUSED
        result.partner_id = str(partner_id)
        # Marking is idempotent (it sets a status), so an in-flight mark is simply sent again.
        self.journal.begin(task.identity, step="mark", partner_id=str(partner_id))
        self.marker.add(task, counts_as_sent=True)
        return Verdict.OK


def _already_invited(partner: Partner) -> str:
    when = datetime.fromtimestamp(partner.invitation_date or 0, UTC).date().isoformat()
    return f"already invited on {when}"
