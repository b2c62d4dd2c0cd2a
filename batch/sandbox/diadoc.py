"""Kontur.Diadoc's counterparty methods as `providers/diadoc.md` describes them (SPEC §13.6).

Relations, as seen from the one demo box, follow the docs' notes: no relation, RejectsMe or
IsRejectedByMe → IsInvitedByMe (IsMyCounteragent at once for `Sociability=AllOrganizations`);
InvitesMe → IsMyCounteragent (theirs accepted); IsInvitedByMe or IsMyCounteragent → nothing.
When the change becomes visible is undocumented: `relation_visible_on` plays it either way —
`send` (the moment AcquireCounteragent is processed) or `result` (when its task completes).
"""

from __future__ import annotations

import math
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from ..config import SandboxOptions
from .diadoc_orgs import Organization, Register, load_seed, new_box
from .ledger import Ledger
from .oidc import TokenIssuer
from .wire import Request, Response, json_response

MAX_MESSAGE = 2000
TOKEN_PATH = "/connect/token"
# Any Diadoc-style method path, versioned or not: what is not served here is a removed version (404).
_METHOD_PATH = re.compile(r"^/(?:V\d+/)?[A-Z][A-Za-z]*$")
_DIGITS = re.compile(r"^\d+$")
_KPP = re.compile(r"^\d{4}[\dA-Z]{2}\d{3}$")


@dataclass(slots=True)
class _Task:
    my_box: str
    key: str  # INN/KPP of the target, for the ledger
    box: str | None  # the target box; None: an INN known only to ЕГРЮЛ, or to nobody
    inn: str
    message: str | None
    ready: float
    conflict: str | None = None  # the 409 text of a task that fails
    applied: bool = False


class Diadoc:
    """Diadoc state (organisations, relations, tasks, tokens) and one method per documented call."""

    changing = frozenset({("POST", "/V3/AcquireCounteragent")})
    never_dropped = frozenset({("POST", TOKEN_PATH)})  # see oidc.py: a lost rotation strands any client
    request_id_header = "X-Kontur-Trace-Id"

    def __init__(self, options: SandboxOptions, ledger: Ledger, clock: Callable[[], float]) -> None:
        self._ledger, self._clock = ledger, clock
        self._task_seconds = options.task_ms / 1000
        self._at_send = options.relation_visible_on == "send"
        self._seed = load_seed(options.diadoc_organizations)
        self.tokens = TokenIssuer(ledger, clock, ttl=options.token_ttl, rotate=options.rotate_refresh)
        self._lock = threading.Lock()
        self.reset()
        self.routes = {
            ("POST", TOKEN_PATH): self.tokens.token,
            ("GET", "/GetMyOrganizations"): self.my_organizations,
            ("GET", "/GetOrganizationsByInnKpp"): self.organizations_by_inn_kpp,
            ("GET", "/V3/GetCounteragent"): self.counteragent,
            ("POST", "/V3/AcquireCounteragent"): self.acquire,
            ("GET", "/V3/AcquireCounteragentResult"): self.acquire_result,
        }

    def reset(self) -> None:
        """Back to the seed: its organisations and relations, the demo refresh token, no tasks."""
        seed = self._seed
        with self._lock:
            self.me = seed.me
            self._orgs = list(seed.organizations)  # a box opened by an invitation by INN is appended
            self._boxes = {o.box: o for o in [seed.me, *self._orgs]}
            self._relations = dict(seed.relations)
            self._messages: dict[str, str] = {}
            self._egrul: dict[str, Register] = {r.inn: r for r in seed.egrul}
            self._tasks: dict[str, _Task] = {}
        self.tokens.reset()

    def set_task_ms(self, ms: float) -> None:
        self._task_seconds = ms / 1000

    def owns(self, path: str) -> bool:
        return path == TOKEN_PATH or bool(_METHOD_PATH.match(path))

    def problem(self, status: int, code: str | None, message: str,
                headers: list[tuple[str, str]] | None = None) -> Response:
        return _text(status, message, code, headers)

    def account(self, req: Request) -> str | None:
        """API calls count against the token's user; token requests against the client id."""
        if req.path == TOKEN_PATH:
            client = self.tokens.client_of(req)
            return f"oidc:{client}" if client else None
        user = self.tokens.user_of(req)
        return f"diadoc:{user}" if user else None

    def settle(self) -> None:
        """Apply every task whose time has come, so the ledger shows what has happened by now."""
        with self._lock:
            self._settle()

    def organizations(self) -> list[dict[str, object]]:
        """Every organisation with its relation, for GET /_sandbox/diadoc."""
        with self._lock:
            self._settle()
            return [{**o.to_json(), "Relation": self._relations.get(o.box)} for o in self._orgs]

    # ------------------------------------------------------------ methods

    def my_organizations(self, req: Request) -> Response:
        refused = self._refuse(req)
        if refused:
            return refused
        return json_response(200, {"Organizations": [self.me.to_json()]})

    def organizations_by_inn_kpp(self, req: Request) -> Response:
        refused = self._refuse(req)
        if refused:
            return refused
        inn, kpp = (req.arg("inn") or "").strip(), (req.arg("kpp") or "").strip()
        if not _DIGITS.match(inn) or len(inn) not in (10, 12):
            return _text(400, "inn must be 10 or 12 digits", "InvalidParameter")
        if kpp and not _KPP.match(kpp):
            return _text(400, "kpp must be 9 characters", "InvalidParameter")
        with self._lock:
            self._settle()
            found = [o.to_json() for o in self._orgs if o.inn == inn and (not kpp or o.kpp == kpp)]
        return json_response(200, {"Organizations": found})

    def counteragent(self, req: Request) -> Response:
        refused = self._refuse(req) or self._my_box(req)
        if refused:
            return refused
        box = _guid(req.arg("counteragentBoxId"))
        if box is None:
            return _text(400, "counteragentBoxId must be a BoxIdGuid", "InvalidParameter")
        with self._lock:
            self._settle()
            org, status = self._boxes.get(box), self._relations.get(box)
            if org is None or status is None:
                return _text(404, f"counteragent {box} not found", "CounteragentNotFound")
            return json_response(200, self._counteragent_json(org, status))

    def acquire(self, req: Request) -> Response:
        refused = self._refuse(req) or self._my_box(req)
        if refused:
            return refused
        department = req.arg("myDepartmentId")
        if department is not None and _guid(department) is None:
            return _text(400, "myDepartmentId must be a GUID", "InvalidParameter")
        if req.media_type != "application/json":  # the real API would read the body as protobuf
            return _text(400, "the body must be JSON with Content-Type: application/json", "InvalidBody")
        try:
            body = req.json()
        except ValueError:
            return _text(400, "the body is not valid JSON", "InvalidBody")
        if not isinstance(body, dict):
            return _text(400, "the body must be a JSON object", "InvalidBody")
        box_text, inn = body.get("BoxId"), body.get("Inn")
        message = body.get("MessageToCounteragent")
        if (box_text is None) == (inn is None):
            return _text(400, "give BoxId or Inn, not both", "InvalidBody")
        if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE):
            return _text(400, f"MessageToCounteragent must be text of at most {MAX_MESSAGE} characters",
                         "InvalidBody")
        with self._lock:
            self._settle()
            target = self._by_box(box_text) if box_text is not None else self._by_inn(inn)
            if isinstance(target, Response):
                return target
            task = self._task(target, inn, message)
            task_id = str(uuid.uuid4())
            self._tasks[task_id] = task
            self._ledger.counteragent(task.key, task.box, "acquires")
            if self._at_send or task.ready <= self._clock():
                self._apply(task)
        return json_response(200, {"TaskId": task_id})

    def acquire_result(self, req: Request) -> Response:
        refused = self._refuse(req) or self._my_box(req)
        if refused:
            return refused
        task_id = (req.arg("taskId") or "").strip()
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.my_box != _guid(req.arg("myBoxId")):
                return _text(404, f"no task {task_id!r}", "TaskNotFound")
            left = task.ready - self._clock()
            if left > 0:
                return Response(204, headers=[("Retry-After", str(max(1, math.ceil(left))))])
            self._settle()
            if task.conflict is not None:
                return _text(409, task.conflict, "AcquireCounteragentFailed")
            return json_response(200, {"BoxId": task.box})

    # ------------------------------------------------------------ helpers (under the lock where noted)

    def _refuse(self, req: Request) -> Response | None:
        """401 without a live Bearer token; 406 when JSON was not asked for (the real API speaks protobuf)."""
        if self.tokens.user_of(req) is None:
            return _text(401, "a valid, unexpired Bearer access token is required", None,
                         [("WWW-Authenticate", "Bearer")])
        if "application/json" not in (req.header("Accept") or "").lower():
            return _text(406, "this sandbox answers JSON only: send Accept: application/json", None)
        return None

    def _my_box(self, req: Request) -> Response | None:
        box = _guid(req.arg("myBoxId"))
        if box is None:
            return _text(400, "myBoxId must be a BoxIdGuid (V3 methods take the GUID form)", "InvalidParameter")
        if box != self.me.box:
            return _text(403, f"no access to box {box}", "AccessDenied")
        return None

    def _by_box(self, text: object) -> Organization | Response:
        box = _guid(text)
        if box is None:
            return _text(400, "BoxId must be a BoxIdGuid", "InvalidBody")
        org = self._boxes.get(box)
        if org is None:
            return _text(404, f"box {box} not found", "BoxNotFound")
        if org is self.me:
            return _text(400, "a box cannot invite itself", "InvalidBody")
        if org.roaming:
            return _text(409, "the counterparty is served by a roaming operator: send a roaming request",
                         "RoamingCounteragent")
        return org

    def _by_inn(self, inn: object) -> Organization | str | Response:
        """The organisation an invitation by INN goes to (head office, the newest), or the bare INN."""
        if not isinstance(inn, str) or not _DIGITS.match(inn) or len(inn) not in (10, 12):
            return _text(400, "Inn must be 10 or 12 digits", "InvalidBody")
        on_diadoc = [o for o in self._orgs if o.inn == inn]
        usable = [o for o in on_diadoc if not o.roaming]
        heads = [o for o in usable if not o.branch] or usable
        if heads:
            return heads[-1]
        if on_diadoc:
            return self._by_box(on_diadoc[-1].box)  # roaming only: the same 409 as by box
        return inn

    def _task(self, target: Organization | str, inn: object, message: str | None) -> _Task:
        ready = self._clock() + self._task_seconds
        if isinstance(target, Organization):
            return _Task(self.me.box, target.key, target.box, target.inn, message, ready)
        register = self._egrul.get(target)
        if register is None:
            return _Task(self.me.box, f"{target}/", None, target, message, ready,
                         conflict=f"Организация с ИНН {target} не найдена в ЕГРЮЛ/ЕГРИП")
        return _Task(self.me.box, f"{target}/{register.kpp}", new_box(target, register.kpp), target, message, ready)

    def _settle(self) -> None:
        """Apply the effects of every task whose time has come (relation_visible_on: result). Under the lock."""
        if self._at_send:
            return
        now = self._clock()
        for task in self._tasks.values():
            if not task.applied and task.ready <= now:
                self._apply(task)

    def _apply(self, task: _Task) -> None:
        """The invitation's effect on the relation; an INN only in ЕГРЮЛ first gets its box. Under the lock."""
        task.applied = True
        if task.box is None:
            self._ledger.counteragent(task.key, None, "failed")
            return
        org = self._boxes.get(task.box)
        if org is None:  # ЕГРЮЛ only: Diadoc opens a box for the head office, holding our invitation
            register = self._egrul[task.inn]
            org = Organization(register.inn, register.kpp, register.name, task.box)
            self._orgs.append(org)
            self._boxes[org.box] = org
        before = self._relations.get(org.box)
        if before in (None, "RejectsMe", "IsRejectedByMe"):
            connected = org.sociability == "AllOrganizations"
            self._relations[org.box] = "IsMyCounteragent" if connected else "IsInvitedByMe"
            what = "invitations"
        elif before == "InvitesMe":
            self._relations[org.box] = "IsMyCounteragent"
            what = "accepted"
        else:
            what = "unchanged"
        if what != "unchanged" and task.message:
            self._messages[org.box] = task.message
        self._ledger.counteragent(task.key, org.box, what)

    def _counteragent_json(self, org: Organization, status: str) -> dict[str, object]:
        out: dict[str, object] = {"IndexKey": org.box, "Organization": org.to_json(), "CurrentStatus": status}
        if org.box in self._messages:
            out["MessageToCounteragent"] = self._messages[org.box]
        return out


def _guid(value: object) -> str | None:
    """The canonical lower-case GUID, or None."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def _text(status: int, message: str, code: str | None,
          headers: list[tuple[str, str]] | None = None) -> Response:
    """Diadoc's errors: a plain-text body, sometimes an X-Diadoc-ErrorCode."""
    extra = [("X-Diadoc-ErrorCode", code)] if code else []
    return Response(status, message.encode("utf-8"), "text/plain; charset=utf-8", extra + list(headers or []))
