"""The one exception hierarchy of invite-batch; each class knows its exit code (SPEC §9).

    InviteBatchError                 exit 2 unless a subclass says otherwise
    ├── UsageError                   bad command line                         2
    ├── ConfigError                  bad configuration (all problems at once) 2
    ├── InputFileError               the input file as a whole is unusable    2
    ├── CheckpointError              the checkpoint cannot be used            2
    ├── CheckpointLockedError        another run holds the checkpoint         4
    ├── OutputError                  an output file cannot be written         2
    ├── RunStopped                   stopped early; run again to resume       3
    │   ├── AuthError                login failed (bad credentials, captcha)  3
    │   ├── CircuitOpenError         too many consecutive failures            3
    │   ├── UnreachableError         no safe connection (TLS, bad URL)        3
    │   ├── ResultsNotWritten        sent, but the results file failed        3
    │   └── Interrupted              SIGINT / SIGTERM                         3
    └── APIError                     one HTTP exchange went wrong (row-level)
        ├── RetriableAPIError        429, 503 (500/502/504 on reads), connect errors: try again
        ├── FatalAPIError            other 4xx: the row fails at once
        ├── AmbiguousAPIError        maybe processed (a drop, a timeout, 500/502/504 on a change)
        └── SessionExpiredError      EDIN session gone: log in again once

APIError subclasses are caught by the runner and turned into row outcomes; they reach
the CLI only through RunStopped subclasses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class InviteBatchError(Exception):
    """Base of every error this tool raises on purpose."""

    exit_code = 2


class UsageError(InviteBatchError):
    """The command line is wrong."""


class ConfigError(InviteBatchError):
    """The configuration is wrong; carries every problem found, each with its key path."""

    def __init__(self, problems: Iterable[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("; ".join(f"{prefix}{p}" for p in self.problems))


class InputFileError(InviteBatchError):
    """The input file cannot be used as a whole (missing, unreadable, empty, no column...)."""


class CheckpointError(InviteBatchError):
    """The checkpoint file cannot be used."""


class OutputError(InviteBatchError):
    """A results, template or metrics file cannot be written (a missing folder, no permission, a full disk)."""


class CheckpointLockedError(InviteBatchError):
    """Another run holds the checkpoint's lock."""

    exit_code = 4


class RunStopped(InviteBatchError):
    """The run stopped before every row was attempted; running again resumes it."""

    exit_code = 3


class AuthError(RunStopped):
    """Authentication failed after a fresh login; not charged to rows."""


class CircuitOpenError(RunStopped):
    """Too many rows in a row failed for server or network reasons."""


class UnreachableError(RunStopped):
    """No request can reach the provider safely (an untrusted certificate, a bad URL): every row would fail."""


class ResultsNotWritten(RunStopped):
    """The run worked its rows but could not write the results file; the checkpoint holds every outcome."""


class Interrupted(RunStopped):
    """The operator (or the scheduler) asked the run to stop."""


class APIError(InviteBatchError):
    """One HTTP exchange with a provider went wrong."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        response: Any = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.message = message
        self.http_status = http_status
        self.code = code
        self.request_id = request_id
        self.response = response


class RetriableAPIError(APIError):
    """Worth another try: 429 and 503; 500/502/504 to a request that changes nothing; no connection made."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class FatalAPIError(APIError):
    """The provider refused the request (other 4xx): the row fails, no retry."""


class AmbiguousAPIError(APIError):
    """The request may have been processed: no answer came (a timeout or drop after sending), a 500/502/504 or an
    unrecognised error answered a request that changes something. Never simply repeated (SPEC §7)."""


class SessionExpiredError(APIError):
    """The provider no longer accepts the session (EDIN 401/403 or a login page)."""
