"""Kontur.Diadoc API client: the OIDC refresh-token flow and the five counterparty methods (SPEC §13)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import AmbiguousAPIError, APIError, AuthError, FatalAPIError
from ...http import HttpClient, Reply, parse_retry_after
from ...logs import register_secret

log = logging.getLogger(__name__)

ERROR_CODE_HEADER = "X-Diadoc-ErrorCode"
JSON_BODY = "application/json; charset=utf-8"
CABINET = "issue a new refresh token in the Diadoc integrator cabinet and put it in the config"


@dataclass(frozen=True, slots=True)
class Organization:
    """One organisation (or roaming representation) as GetOrganizationsByInnKpp / GetMyOrganizations list it."""

    inn: str
    kpp: str
    name: str
    box: str  # its first box's BoxIdGuid ("" when it has none)
    roaming: bool
    branch: bool
    sociability: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Organization:
        boxes = data.get("Boxes") or []
        box = next((str(b.get("BoxIdGuid") or "") for b in boxes if isinstance(b, dict) and b.get("BoxIdGuid")), "")
        return cls(inn=str(data.get("Inn") or ""), kpp=str(data.get("Kpp") or ""),
                   name=str(data.get("FullName") or data.get("ShortName") or ""), box=box.lower(),
                   roaming=bool(data.get("IsRoaming")), branch=bool(data.get("IsBranch")),
                   sociability=str(data.get("Sociability") or ""))

    def describe(self) -> str:
        kpp = f"/{self.kpp}" if self.kpp else ""
        return f"{self.name} (INN/KPP {self.inn}{kpp}, BoxIdGuid {self.box or '-'})"


@dataclass(frozen=True, slots=True)
class Acquired:
    task_id: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class TaskState:
    """A task poll's answer: done (with the counterparty's BoxIdGuid) or still running (wait Retry-After)."""

    done: bool
    box: str
    retry_after: float | None
    reply: Reply


class RefreshToken:
    """The refresh token: the configured one, or `refresh_token_file`'s, written back atomically when rotated."""

    def __init__(self, value: str, path: Path | None) -> None:
        self.path = path
        if path is not None:
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise AuthError(f"cannot read auth.refresh_token_file {path}: {e.strerror}") from None
            if not value:
                raise AuthError(f"auth.refresh_token_file {path} is empty: {CABINET}")
        register_secret(value)
        self.value = value
        self._warned = False

    def replace(self, new: str) -> None:
        """Keep a rotated refresh token: in the file before anything uses the new access token, else warn once."""
        register_secret(new)
        if self.path is None:
            if not self._warned:
                self._warned = True
                log.warning("Diadoc issued a new refresh token; the configured auth.refresh_token may stop working "
                            "(use auth.refresh_token_file to keep the new one)")
        else:
            write_private(self.path, new + "\n")
        self.value = new


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, mode 0600: a crash leaves the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Tokens:
    """One access token for every worker: refreshed a tenth of its life early (at most 60 s), and once on a 401."""

    def __init__(self, http: HttpClient, path: str, *, client_id: str, client_secret: str, refresh: RefreshToken,
                 clock: Callable[[], float]) -> None:
        self._http, self._path, self._clock = http, path, clock
        self._client_id, self._client_secret, self._refresh = client_id, client_secret, refresh
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0
        self.requests = 0

    def current(self) -> str:
        """The cached access token, refreshed first when it is (nearly) expired."""
        with self._lock:
            if not self._token or self._clock() >= self._renew_at:
                self._fetch()
            return self._token

    def renew(self, refused: str) -> str:
        """After a 401 to `refused`: a new token (unless another worker got one meanwhile)."""
        with self._lock:
            if self._token == refused:
                self._fetch()
            return self._token

    def _fetch(self) -> None:
        form = {"grant_type": "refresh_token", "client_id": self._client_id, "client_secret": self._client_secret,
                "refresh_token": self._refresh.value}
        self.requests += 1
        try:
            # Not mutating: a refused or lost refresh changes nothing we could repeat twice (SPEC §13.5).
            reply = self._http.request("POST", self._path, mutating=False, data=form,
                                       headers={"Accept": "application/json"})
        except FatalAPIError as err:
            raise _refused(err) from None
        try:
            data = reply.json()
            token, expires_in = str(data["access_token"]), float(data.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise AuthError("Diadoc's token endpoint answered without an access_token") from None
        register_secret(token)
        new_refresh = data.get("refresh_token")
        if isinstance(new_refresh, str) and new_refresh and new_refresh != self._refresh.value:
            self._refresh.replace(new_refresh)  # written back before the new access token is used
        self._token = token
        self._renew_at = self._clock() + expires_in - min(expires_in / 10, 60.0)
        log.debug("Diadoc access token refreshed (expires in %.0f s)", expires_in)


def _refused(err: FatalAPIError) -> AuthError:
    """A refused token request: the run stops (exit 3), with what to do."""
    code = ""
    if isinstance(err.response, Reply):
        try:
            body = err.response.json()
            code = str(body.get("error") or "") if isinstance(body, dict) else ""
        except ValueError:
            pass
    if code == "invalid_grant":
        return AuthError(f"Diadoc refused the refresh token (invalid_grant: expired, revoked or already used): "
                         f"{CABINET}")
    if code == "invalid_client" or err.http_status == 401:
        return AuthError("Diadoc refused the client id or secret (invalid_client): check auth.client_id and "
                         "auth.client_secret in the integrator cabinet")
    return AuthError(f"Diadoc's token endpoint refused the request (HTTP {err.http_status} {code or err.message})")


class DiadocClient:
    """The counterparty methods, V3 only; every call with the shared Bearer token, one refresh on a 401."""

    def __init__(self, http: HttpClient, tokens: Tokens) -> None:
        self._http, self.tokens = http, tokens

    def _call(self, method: str, path: str, *, params: Mapping[str, str], body: Any = None,
              mutating: bool = False) -> Reply:
        token = self.tokens.current()
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = JSON_BODY
            try:
                return self._http.request(method, path, mutating=mutating, params=dict(params), data=data,
                                          headers=headers)
            except FatalAPIError as err:
                if err.http_status != 401:
                    raise with_code(err) from None
                if attempt == 2:
                    raise AuthError("Diadoc refused a freshly issued access token (401): check that the refresh "
                                    "token's user has access to the box and the API (scope Diadoc.PublicAPI)"
                                    ) from None
                # A 401 is answered before anything is done, so even AcquireCounteragent may be sent again.
                token = self.tokens.renew(token)
            except APIError as err:
                raise with_code(err) from None
        raise AssertionError("unreachable")

    def my_organizations(self) -> list[Organization]:
        reply = self._call("GET", "/GetMyOrganizations", params={"autoRegister": "false"})
        return _organizations(reply)

    def organizations(self, inn: str, kpp: str = "") -> list[Organization]:
        params = {"inn": inn, "kpp": kpp} if kpp else {"inn": inn}
        return _organizations(self._call("GET", "/GetOrganizationsByInnKpp", params=params))

    def counteragent(self, my_box: str, box: str) -> str | None:
        """The relation's CurrentStatus; None when there is none (404)."""
        try:
            reply = self._call("GET", "/V3/GetCounteragent", params={"myBoxId": my_box, "counteragentBoxId": box})
        except FatalAPIError as err:
            if err.http_status == 404:
                return None
            raise
        data = _json(reply)
        return str(data.get("CurrentStatus") or "UnknownCounteragentStatus")

    def acquire(self, my_box: str, *, department: str | None, box: str = "", inn: str = "",
                message: str = "") -> Acquired:
        params = {"myBoxId": my_box}
        if department:
            params["myDepartmentId"] = department
        body: dict[str, str] = {"BoxId": box} if box else {"Inn": inn}
        if message:
            body["MessageToCounteragent"] = message
        reply = self._call("POST", "/V3/AcquireCounteragent", params=params, body=body, mutating=True)
        task_id = str(_json(reply).get("TaskId") or "")
        if not task_id:  # processed, but nothing to poll: settled by reading the relation, like a lost answer
            raise AmbiguousAPIError("AcquireCounteragent answered without a TaskId", http_status=reply.status,
                                request_id=reply.request_id or None, response=reply, attempts=reply.attempts)
        return Acquired(task_id, reply)

    def result(self, my_box: str, task_id: str) -> TaskState | None:
        """The task's state; None when Diadoc knows no such task (404). A failed task raises FatalAPIError 409."""
        try:
            reply = self._call("GET", "/V3/AcquireCounteragentResult", params={"myBoxId": my_box, "taskId": task_id})
        except FatalAPIError as err:
            if err.http_status == 404:
                return None
            raise
        if reply.status == 204 or not reply.body:
            wait = parse_retry_after(reply.headers.get("Retry-After"), date=reply.headers.get("Date"))
            return TaskState(False, "", wait, reply)
        return TaskState(True, str(_json(reply).get("BoxId") or "").lower(), None, reply)


def with_code(err: APIError) -> APIError:
    """Diadoc's errors are plain text; their code travels in a header (SPEC §13.5)."""
    if err.code is None and isinstance(err.response, Reply):
        err.code = err.response.headers.get(ERROR_CODE_HEADER) or None
    return err


def _json(reply: Reply) -> dict[str, Any]:
    try:
        data = reply.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise FatalAPIError("Diadoc answered something that is not a JSON object", http_status=reply.status,
                            request_id=reply.request_id or None, response=reply, attempts=reply.attempts)
    return data


def _organizations(reply: Reply) -> list[Organization]:
    found = _json(reply).get("Organizations") or []
    return [Organization.from_json(o) for o in found if isinstance(o, dict)]
