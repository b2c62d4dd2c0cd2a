"""Both APIs behind one router, wrapped in latency, faults, the rate limit and the ledger."""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

from ..config import SandboxOptions
from .diadoc import Diadoc
from .edin import Edin
from .faults import Draw, Faults, RateLimiter, retry_after
from .invoicebox import Invoicebox
from .ledger import Ledger
from .wire import Request, Response, error, json_response

Handler = Callable[[Request], Response]
AccountOf = Callable[[Request], str | None]

# Settings that may change while serving, with their upper bounds.
TUNABLE = {"latency_ms": 60_000.0, "error_rate": 1.0, "throttle_rate": 1.0, "drop_rate": 1.0,
           "ambiguous_rate": 1.0, "session_idle": float("inf"), "task_ms": 3_600_000.0}

# What a proxy in front of a real API answers: HTML, so clients must go by the status. A 500 comes
# from the application itself, in the provider's own error format (`Provider.internal_error`).
_PROXY_BODIES = {status: f"<html><body><h1>{status} {HTTPStatus(status).phrase}</h1></body></html>".encode()
                 for status in (502, 503, 504)}


class Provider(Protocol):
    """What the router asks of each simulated API."""

    @property
    def routes(self) -> Mapping[tuple[str, str], Handler]: ...

    @property
    def changing(self) -> frozenset[tuple[str, str]]:
        """The routes whose requests change something."""

    @property
    def never_dropped(self) -> frozenset[tuple[str, str]]:
        """Routes spared drops and ambiguous answers."""

    @property
    def request_id_header(self) -> str: ...

    def account(self, req: Request) -> str | None: ...

    def owns(self, path: str) -> bool:
        """Whether an unknown path looks like this API's, so its 404 is in this API's format."""

    def problem(self, status: int, code: str | None, message: str,
                headers: list[tuple[str, str]] | None = None) -> Response:
        """An error in this API's own format."""


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    provider: Provider
    changes: bool
    droppable: bool


class Sandbox:
    """The simulator without sockets: `handle` turns a Request into a Response, or None for a drop."""

    def __init__(self, options: SandboxOptions, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.options = options
        self._sleep = sleep
        self.ledger = Ledger(clock)
        self.faults = Faults(options)
        self.limiter = RateLimiter(options.rate_limit, clock)
        self.edin = Edin(options, self.ledger, clock)
        self.invoicebox = Invoicebox(self.ledger)
        self.diadoc = Diadoc(options, self.ledger, clock)
        self._routes: dict[str, dict[str, _Route]] = {}
        for provider in self._providers():
            for (method, path), handler in provider.routes.items():
                key = (method, path)
                route = _Route(handler, provider, key in provider.changing, key not in provider.never_dropped)
                self._routes.setdefault(path, {})[method] = route

    def _providers(self) -> tuple[Provider, ...]:
        return (self.edin, self.invoicebox, self.diadoc)

    def handle(self, req: Request) -> Response | None:
        """Answer one request; None means: close the connection without answering."""
        if req.path == "/_sandbox" or req.path.startswith("/_sandbox/"):
            return self._admin(req)  # never faulted, never counted
        call = f"{req.method} {req.path}"
        self.ledger.arrive(call)
        if self.options.latency_ms > 0:
            self._sleep(self.options.latency_ms / 1000)
        draw = self.faults.draw()
        methods = self._routes.get(req.path)
        route = methods.get(req.method) if methods else None
        provider = route.provider if route else self._provider_of(req.path)
        response = self._fault(draw, provider)
        if response is None:
            account = (route.provider.account(req) if route else None) or f"ip:{req.client}"
            wait = self.limiter.acquire(account)
            if wait is not None:
                response = _problem(provider, 429, None, "Too Many Requests", [("Retry-After", retry_after(wait))])
        if response is None and route and route.changes and route.droppable and draw.ambiguous is not None:
            # The backend may or may not have done it; the answer says nothing either way (SPEC §8).
            if draw.process_first:
                self._process(req, route, methods, provider)
            self.ledger.ambiguous(call, processed=draw.process_first)
            response = self._error_answer(draw.ambiguous, route.provider)
        if response is None:
            response = self._process(req, route, methods, provider)
            # Processed, effects kept; the answer is lost on the way back.
            if draw.drop and (route is None or route.droppable):
                self.ledger.dropped()
                if route is not None and route.changes:
                    self.ledger.ambiguous(call, processed=True, drop=True)
                return None
        header = provider.request_id_header if provider else "X-Request-Id"
        response.headers.append((header, str(uuid.uuid4())))
        self.ledger.answered(response.status)
        return response

    def _provider_of(self, path: str) -> Provider | None:
        """The API an unknown path belongs to, by its prefix, so its 404 looks like that API's."""
        return next((p for p in self._providers() if p.owns(path)), None)

    def _error_answer(self, status: int, provider: Provider | None) -> Response:
        if status == 500:
            return _problem(provider, 500, None, "Internal Server Error")
        return Response(status, _PROXY_BODIES[status], "text/html", [])

    def _fault(self, draw: Draw, provider: Provider | None) -> Response | None:
        if draw.throttle:
            return _problem(provider, 429, None, "Too Many Requests", [("Retry-After", "1")])
        if draw.error is not None:
            return self._error_answer(draw.error, provider)
        return None

    def _process(self, req: Request, route: _Route | None, methods: dict[str, _Route] | None,
                 provider: Provider | None) -> Response:
        if methods is None:
            return _problem(provider, 404, "not_found", f"no such endpoint: {req.path}")
        if route is None:
            return _problem(provider, 405, "method_not_allowed", f"{req.method} is not allowed here",
                            [("Allow", ", ".join(sorted(methods)))])
        try:
            return route.handler(req)
        except Exception:  # a sandbox bug must show as a 500, not as a hung client
            traceback.print_exc(file=sys.stderr)
            return _problem(provider, 500, "sandbox_bug", "the sandbox failed on this request")

    # ------------------------------------------------------------ /_sandbox/*

    def ledger_json(self, window: float | None = None) -> dict[str, Any]:
        self.diadoc.settle()
        return self.ledger.snapshot(self.edin.partner_codes(), window)

    def reset(self, *, everything: bool = False) -> None:
        """Clear the ledger; with `everything`, also partners, sessions, rate windows and the seed."""
        self.ledger.clear()
        if everything:
            self.edin.reset()
            self.diadoc.reset()
            self.limiter.clear()
            self.faults.reseed()

    def configure(self, **changes: Any) -> SandboxOptions:
        """Change faults while serving (e.g. drops only after login); ValueError for a bad setting."""
        unknown = set(changes) - set(TUNABLE)
        if unknown:
            raise ValueError(f"not a tunable setting: {', '.join(sorted(unknown))}")
        for key, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= TUNABLE[key]:
                raise ValueError(f"{key} must be a number between 0 and {TUNABLE[key]:g}")
        self.options = dataclasses.replace(self.options, **changes)
        self.faults.configure(self.options)
        self.edin.set_idle(self.options.session_idle)
        self.diadoc.set_task_ms(self.options.task_ms)
        return self.options

    def _admin(self, req: Request) -> Response:
        if req.path == "/_sandbox/ledger" and req.method == "GET":
            raw = req.arg("window")
            try:
                window = float(raw) if raw else None
            except ValueError:
                window = -1.0
            if window is not None and not window > 0:
                return error(400, "bad_request", "window must be a number of seconds > 0")
            return json_response(200, self.ledger_json(window))
        if req.path == "/_sandbox/reset" and req.method == "POST":
            everything = (req.arg("all") or "").lower() in ("1", "true", "yes")
            self.reset(everything=everything)
            return json_response(200, {"reset": "all" if everything else "ledger"})
        if req.path == "/_sandbox/faults" and req.method == "POST":
            try:
                changes = req.json()
                options = self.configure(**changes)
            except (ValueError, TypeError) as e:
                return error(400, "bad_request", f"a JSON object of settings is required: {e}")
            return json_response(200, {k: getattr(options, k) for k in TUNABLE})
        if req.path == "/_sandbox/partners" and req.method == "GET":
            return json_response(200, self.edin.all_partners())
        if req.path == "/_sandbox/diadoc" and req.method == "GET":
            return json_response(200, {"my_organization": self.diadoc.me.to_json(),
                                       "organizations": self.diadoc.organizations()})
        return error(404, "not_found", f"no such sandbox endpoint: {req.method} {req.path}")


def _problem(provider: Provider | None, status: int, code: str | None, message: str,
             headers: list[tuple[str, str]] | None = None) -> Response:
    """An error in the format of the API the path belongs to (JSON when it belongs to none)."""
    if provider is not None:
        return provider.problem(status, code, message, headers)
    return error(status, code, message, headers=headers)
