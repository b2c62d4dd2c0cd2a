"""What happens to one Diadoc row (SPEC §13.3, §13.4): resolve, read the relation, invite, poll the task.

Exactly once without an idempotency key:

* The row is committed in flight before AcquireCounteragent, its TaskId as soon as it is answered
  (`journal.record_invitation`), then the outcome. A row left in flight with a TaskId polls that task.
* Without a TaskId (a lost answer, a crash mid-send) the row is resolved again and its relation read:
  IsInvitedByMe or IsMyCounteragent means the invitation is there. That rests on what the docs leave open —
  that a processed send shows in GetCounteragent at once — so `RelationCheck` tests it once per checkpoint,
  right after the first answered send. Under the other reading such rows become `unknown`, never sent again
  blindly; until the check has run, they wait (in flight) until the other rows are done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ...checkpoint import ItemState, Journal
from ...clock import Clock
from ...config import Config, is_loopback
from ...errors import (
    AmbiguousAPIError,
    APIError,
    AuthError,
    ConfigError,
    FatalAPIError,
    Interrupted,
    RetriableAPIError,
    RunStopped,
    UnreachableError,
)
from ...http import HttpClient
from ...model import Status
from ...outcome import Task, Verdict, describe, fill_from_error, join_detail, record
from ..base import Session
from .client import DiadocClient, Organization, RefreshToken, Tokens, with_code
from .profile import DEFAULT_TOKEN_URL, DiadocAuth, DiadocInvite

log = logging.getLogger(__name__)

TOKEN_PATH = "/connect/token"
# What the checkpoint keeps about when a processed send shows in GetCounteragent (SPEC §13.4): "yes" | "no".
RELATION_FACT = "diadoc.relation_visible_at_send"
VISIBLE = frozenset({"IsInvitedByMe", "IsMyCounteragent"})  # an invitation of ours is there (or was accepted)
NO_RELATION = frozenset({None, "UnknownCounteragentStatus"})
REJECTED = frozenset({"RejectsMe", "IsRejectedByMe"})
AMBIGUOUS_RESENDS = 2  # after a lost answer, how often a send the look-up did not find is made again
BY_INN = "invited by INN: Diadoc opens a box (head office only)"
FOUND = "found invited on reconciliation"
UNSETTLED = ("a look-up cannot tell whether it arrived: Diadoc did not show a processed invitation at once "
             f"(checkpoint fact {RELATION_FACT}=no)")
UNTESTED = "a look-up cannot tell yet whether it arrived (no invitation was answered this run to test it)"


class DiadocSession(Session):
    """One run against one Diadoc account: a token and the own box, then each row; deferred rows at the end."""

    def __init__(self, config: Config, http: HttpClient, journal: Journal, clock: Clock,
                 should_stop: Callable[[], bool]) -> None:
        assert isinstance(config.auth, DiadocAuth) and isinstance(config.invite, DiadocInvite)
        self.config, self.auth, self.invite = config, config.auth, config.invite
        self.http, self.journal, self.clock, self.should_stop = http, journal, clock, should_stop
        self.resend_ambiguous = config.retry.ambiguous == "resend"
        self.max_wait = config.retry.max_retry_after
        self._token_http: HttpClient | None = None
        self.client: DiadocClient
        self.check: RelationCheck
        self.my_box = ""
        self._claims: dict[str, int] = {}  # BoxIdGuid → the line that took it this run (SPEC §13.2)
        self._notes: dict[int, str] = {}  # each row's validation notes, kept ahead of its outcome
        self._lock = threading.Lock()
        self._deferred: list[tuple[Task, Organization, Callable[[], Verdict]]] = []

    # ── the session ─────────────────────────────────────────────────────────────────────────────
    def open(self) -> None:
        """One token request and GetMyOrganizations; no box, several, or an unlisted my_box_id stop the run (exit 2)."""
        origin, path = self._token_endpoint()
        token_http = self.http
        if origin != self.http.base_url:
            cfg = self.config
            token_http = self._token_http = HttpClient(
                origin, timeouts=cfg.limits.timeout, retry=cfg.retry, limiter=None, workers=1,
                ca_bundle=cfg.ca_bundle, sleep=self.http.wait, clock=self.clock.monotonic)
        refresh = RefreshToken(self.auth.refresh_token,
                               Path(self.auth.refresh_token_file) if self.auth.refresh_token_file else None)
        tokens = Tokens(token_http, path, client_id=self.auth.client_id, client_secret=self.auth.client_secret,
                        refresh=refresh, clock=self.clock.monotonic)
        self.client = DiadocClient(self.http, tokens)
        tokens.current()
        boxes = [o for o in self.client.my_organizations() if o.box]
        listing = "; ".join(o.describe() for o in boxes) or "none"
        wanted = self.invite.my_box_id
        if wanted:
            if wanted not in {o.box for o in boxes}:
                raise ConfigError([f"invite.my_box_id: {wanted} is not one of this account's boxes: {listing}"],
                                  self.config.source)
            self.my_box = wanted
        elif len(boxes) != 1:
            raise ConfigError([f"invite.my_box_id: the account has {len(boxes) or 'no'} box"
                               f"{'es' if len(boxes) != 1 else ''}, set the one to invite from: {listing}"],
                              self.config.source)
        else:
            self.my_box = boxes[0].box
        log.info("inviting from Diadoc box %s", self.my_box)
        self.check = RelationCheck(self.client, self.journal, self.my_box)

    def _token_endpoint(self) -> tuple[str, str]:
        """(origin, path) of the token endpoint: configured, a loopback sandbox's own, or identity.kontur.ru."""
        url = self.auth.token_url
        if url is None:
            host = urlsplit(self.config.base_url).hostname or ""
            url = self.config.base_url + TOKEN_PATH if is_loopback(host) else DEFAULT_TOKEN_URL
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        return origin, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def handle(self, task: Task) -> Verdict:
        if self.should_stop():
            return Verdict.OK
        self._notes[task.result.line] = task.result.detail
        try:
            return self._row(task)
        except FatalAPIError as err:  # a look-up refused: nothing was sent
            return self._failed(task, err, Verdict.REFUSED)
        except (RetriableAPIError, AmbiguousAPIError) as err:
            return self._failed(task, err, Verdict.BROKEN)

    def finish(self) -> None:
        """Settle the rows kept back for the relation check, now that the other rows are done."""
        with self._lock:
            deferred, self._deferred = self._deferred, []
        for task, org, resume in deferred:
            if self.should_stop():  # left in flight: the next run settles it
                task.result.detail = self._detail(task, join_detail("in flight when the run stopped", UNTESTED))
                continue
            try:
                if self.check.value != "yes":
                    self._unknown(task, join_detail("no answer to the invitation",
                                                    UNSETTLED if self.check.value == "no" else UNTESTED))
                elif self.client.counteragent(self.my_box, org.box) in VISIBLE:
                    self._sent(task, FOUND)
                else:
                    resume()
            except APIError as err:
                self._unknown(task, f"no answer to the invitation, and the look-up failed: {describe(err)}")

    def close(self) -> None:
        if self._token_http is not None:
            self._token_http.close()

    # ── one row ─────────────────────────────────────────────────────────────────────────────────
    def _row(self, task: Task) -> Verdict:
        prior = task.item
        earlier = prior is not None and prior.state in (ItemState.IN_FLIGHT, ItemState.UNKNOWN)
        if prior is not None and earlier and prior.invitation_id:
            verdict = self._poll(task, prior.invitation_id, prior.partner_id, "invited")
            if verdict is not None:
                return verdict
            # Diadoc knows no such task (any more): settled by the look below, as without one.
        org = self._resolve(task)
        if isinstance(org, Verdict):
            return org
        if org is None:
            if self.invite.unregistered == "fail":
                return self._end(task, ItemState.FAILED, "not on Diadoc", Verdict.REFUSED)
            return self._send(task, None, BY_INN)  # nothing is visible either way, so an earlier one is sent again
        task.result.partner_id = org.box
        if (claimed := self._claim(org.box, task)) is not None:
            return claimed
        status = self.client.counteragent(self.my_box, org.box)
        if earlier:
            if status in VISIBLE:
                return self._sent(task, FOUND)
            if prior is not None and prior.state is ItemState.IN_FLIGHT and not self.resend_ambiguous:
                if self.check.value is None:
                    return self._defer(task, org, lambda: self._decide(task, org, status),
                                       "in flight when an earlier run stopped")
                if self.check.value == "no":
                    return self._unknown(task, join_detail("in flight when an earlier run stopped", UNSETTLED))
        return self._decide(task, org, status)

    def _resolve(self, task: Task) -> Organization | Verdict | None:
        """The row's organisation (roaming twins and branches weeded out), None when Diadoc has none."""
        values = task.values
        found = pick(self.client.organizations(values["inn"], values.get("kpp", "")), bool(values.get("kpp")))
        if isinstance(found, list):
            return self._end(task, ItemState.FAILED, "several Diadoc organisations for this INN: give the KPP",
                             Verdict.REFUSED)
        if found is not None and found.box == self.my_box:
            return self._end(task, ItemState.FAILED, "this is your own box", Verdict.REFUSED)
        return found

    def _claim(self, box: str, task: Task) -> Verdict | None:
        """Two rows that resolve to the same box: the later one is a duplicate, never invited twice."""
        line = task.result.line
        with self._lock:
            first = self._claims.setdefault(box, line)
        if first == line:
            return None
        task.result.status, task.result.detail = Status.DUPLICATE, f"same Diadoc box as row {first}"
        return Verdict.OK

    def _decide(self, task: Task, org: Organization, status: str | None) -> Verdict:
        """SPEC §13.3's table: skip, or invite (or accept theirs)."""
        if status in NO_RELATION:
            return self._send(task, org, "connected at once" if org.sociability == "AllOrganizations" else "invited")
        if status == "IsMyCounteragent":
            return self._end(task, ItemState.SKIPPED, "already a counterparty")
        if status == "IsInvitedByMe":
            return self._end(task, ItemState.SKIPPED, "already invited, awaiting their answer")
        if status == "InvitesMe":
            if self.invite.accept_incoming:
                return self._send(task, org, "accepted their invitation")
            return self._end(task, ItemState.SKIPPED, "they invited you: accept in Diadoc")
        if status in REJECTED:
            if self.invite.reinvite_rejected:
                return self._send(task, org, "invited again after a refusal")
            return self._end(task, ItemState.SKIPPED, "they refused or ended the partnership")
        return self._end(task, ItemState.FAILED, f"unexpected relation {status!r}", Verdict.REFUSED)

    def _send(self, task: Task, org: Organization | None, kind: str) -> Verdict:
        """AcquireCounteragent, committed in flight first and its TaskId at once; then the task is polled."""
        values, result = task.values, task.result
        for attempt in range(AMBIGUOUS_RESENDS + 1):
            if self.should_stop():
                return Verdict.OK  # pending, or (after a lost answer) in flight for the next run to settle
            self.journal.begin(task.identity, step="invite", partner_id=org.box if org else "")
            try:
                sent = self.client.acquire(self.my_box, department=self.invite.my_department_id,
                                           box=org.box if org else "", inn=values["inn"],
                                           message=values.get("message", ""))
            except (Interrupted, UnreachableError, AuthError):
                # A wait between tries, no safe connection, or a refused token: nothing is outstanding.
                record(self.journal, task, ItemState.PENDING, self.clock)
                raise
            except AmbiguousAPIError as err:
                fill_from_error(result, err)
                verdict, org = self._after_lost_answer(task, org, kind, err, last=attempt == AMBIGUOUS_RESENDS)
                if verdict is not None:
                    return verdict
                continue
            except FatalAPIError as err:
                if err.http_status == 409:
                    return self._end(task, ItemState.FAILED, "roaming counterparty: a roaming request is needed",
                                     Verdict.REFUSED, err)
                return self._failed(task, err, Verdict.REFUSED)
            except RetriableAPIError as err:
                return self._failed(task, err, Verdict.BROKEN)
            result.invitation_id, result.request_id = sent.task_id, sent.reply.request_id
            result.http_status, result.attempts = sent.reply.status, result.attempts + sent.reply.attempts
            self.journal.record_invitation(task.identity, sent.task_id)
            if org is not None:
                self.check.after_send(org.box)
            verdict = self._poll(task, sent.task_id, org.box if org else "", kind)
            if verdict is None:  # a task answered a moment ago and unknown already: do not guess
                return self._unknown(task, f"task {sent.task_id} not found by AcquireCounteragentResult")
            return verdict
        raise AssertionError("unreachable")

    def _after_lost_answer(self, task: Task, org: Organization | None, kind: str, err: AmbiguousAPIError, *,
                           last: bool) -> tuple[Verdict | None, Organization | None]:
        """After a send whose answer was lost: its outcome, or (None, target) to send it again."""
        why = f"no answer to the invitation: {describe(err)}"
        log.info("row %d: no answer to AcquireCounteragent; reading the relation", task.result.line)
        task.result.status, task.result.detail = Status.UNKNOWN, self._detail(task, why)  # until the look tells
        try:
            if org is None:  # by INN: a box it opened may show by now
                found = pick(self.client.organizations(task.values["inn"], task.values.get("kpp", "")),
                             bool(task.values.get("kpp")))
                if not isinstance(found, Organization):
                    return (self._unknown(task, why) if last else None), None
                org = found
            status = self.client.counteragent(self.my_box, org.box)
        except APIError as look:
            return self._unknown(task, f"{why}; the look-up failed too: {describe(look)}"), org
        if status in VISIBLE:
            task.result.partner_id = org.box
            return self._sent(task, FOUND), org
        if not self.resend_ambiguous:
            if self.check.value is None:
                target = org
                return self._defer(task, org, lambda: self._send(task, target, kind), why), org
            if self.check.value == "no":
                return self._unknown(task, join_detail(why, UNSETTLED)), org
        return (self._unknown(task, why) if last else None), org

    def _poll(self, task: Task, task_id: str, box: str, kind: str) -> Verdict | None:
        """Poll the task to its end (204 waits Retry-After with the run's stop-aware sleep); None: no such task.

        Until it ends the item stays in flight with its TaskId, so a later run polls it and never resends."""
        try:
            return self._poll_until(task, task_id, box, kind)
        except RunStopped:  # a stop, a refused token, no connection: the task stays in flight for the next run
            self._running(task, f"task {task_id} still running when the run stopped")
            raise

    def _poll_until(self, task: Task, task_id: str, box: str, kind: str) -> Verdict | None:
        result = task.result
        deadline = self.clock.monotonic() + self.invite.result_timeout
        while True:
            try:
                state = self.client.result(self.my_box, task_id)
            except FatalAPIError as err:
                if err.http_status == 409:  # the task failed: its text says why (e.g. not in ЕГРЮЛ)
                    return self._end(task, ItemState.FAILED, err.message, Verdict.REFUSED, err)
                return self._running(task, f"task {task_id}: {describe(err)}")
            except (RetriableAPIError, AmbiguousAPIError) as err:
                return self._running(task, f"task {task_id}: result not read ({describe(err)})")
            if state is None:
                return None
            if state.done:
                result.partner_id = state.box or box
                result.http_status, result.request_id = state.reply.status, result.request_id or state.reply.request_id
                return self._sent(task, kind)
            wait = min(state.retry_after if state.retry_after is not None else 1.0, self.max_wait)
            if self.clock.monotonic() + wait > deadline:
                return self._running(task, f"task {task_id} still running")
            self.http.wait(wait)

    # ── outcomes ────────────────────────────────────────────────────────────────────────────────
    def _detail(self, task: Task, detail: str) -> str:
        return join_detail(self._notes.get(task.result.line, ""), detail)

    def _sent(self, task: Task, detail: str) -> Verdict:
        record(self.journal, task, ItemState.SENT, self.clock, detail=self._detail(task, detail))
        return Verdict.OK

    def _end(self, task: Task, state: ItemState, detail: str, verdict: Verdict = Verdict.OK,
             err: APIError | None = None) -> Verdict:
        record(self.journal, task, state, self.clock, detail=self._detail(task, detail), error=err)
        return verdict

    def _failed(self, task: Task, err: APIError, verdict: Verdict) -> Verdict:
        return self._end(task, ItemState.FAILED, describe(with_code(err)), verdict, err)

    def _unknown(self, task: Task, detail: str) -> Verdict:
        return self._end(task, ItemState.UNKNOWN, detail, Verdict.BROKEN)

    def _running(self, task: Task, detail: str) -> Verdict:
        """The task's end is not known: the item stays in flight with its TaskId (the next run polls it)."""
        detail = join_detail(detail, "the next run polls it, never resends")
        task.result.status, task.result.detail = Status.UNKNOWN, self._detail(task, detail)
        return Verdict.BROKEN

    def _defer(self, task: Task, org: Organization, resume: Callable[[], Verdict], why: str) -> Verdict:
        """Keep a row in flight until the other rows are done: an answered send will have tested the look-up."""
        with self._lock:
            self._deferred.append((task, org, resume))
        task.result.status, task.result.detail = Status.UNKNOWN, self._detail(task, join_detail(why, UNTESTED))
        return Verdict.OK


class RelationCheck:
    """Whether a processed send shows in GetCounteragent at once (SPEC §13.4): tested once per checkpoint,
    right after the first answered send to a box, and kept in the checkpoint."""

    def __init__(self, client: DiadocClient, journal: Journal, my_box: str) -> None:
        self.client, self.journal, self.my_box = client, journal, my_box
        self._lock = threading.Lock()
        self.value = journal.fact(RELATION_FACT)
        if self.value == "no":
            _warn_not_visible()

    def after_send(self, box: str) -> None:
        if self.value is not None:
            return
        with self._lock:
            if self.value is not None:
                return
            try:
                status = self.client.counteragent(self.my_box, box)
            except APIError:  # cannot tell from this one; the next answered send tries again
                return
            self.value = "yes" if status in VISIBLE else "no"
            self.journal.set_fact(RELATION_FACT, self.value)
        if self.value == "no":
            _warn_not_visible()


def _warn_not_visible() -> None:
    log.warning("Diadoc did not show an invitation in GetCounteragent right after its send was answered: a lost "
                "answer cannot be settled by a look-up, so such rows become unknown instead of being sent again "
                "(the checkpoint keeps this finding: %s=no, see `invite-batch status`)", RELATION_FACT)


def pick(orgs: list[Organization], with_kpp: bool) -> Organization | list[Organization] | None:
    """SPEC §13.3: roaming twins dropped beside a non-roaming one; without a KPP a head office beats branches.
    One left → it; none → None; several → the list."""
    unique = list({o.box or id(o): o for o in orgs}.values())
    usable = [o for o in unique if not o.roaming] or unique
    if not with_kpp:
        usable = [o for o in usable if not o.branch] or usable
    if not usable:
        return None
    return usable[0] if len(usable) == 1 else usable
