"""The provider interface: everything the core asks of a provider, and nothing more.

A provider is one package under `batch/providers/` (or in another distribution), registered through the
entry-point group `invite_batch.providers` (see `registry.py`). Its `Provider` subclass is its profile:

* its config section: default base URL and rate, its actions, and the parsing of its `auth` and `invite`
  keys (`parse_settings`), each problem reported with its key path;
* its input fields (`fields`: header aliases and the template's Help text), which of them a file must have
  (`required`), and its row rules (`rules`: a RawRow → a valid Row or all its problems);
* its identity rule (`identity`: the key a row is known by in the checkpoint and among duplicates);
* what an item left in flight by a crash means (`reconciles`): looked up again, or `unknown`;
* the batched follow-up an earlier run may still owe (`followup`, e.g. EDIN's status mark);
* its client and its per-row flow, behind `session()`: one `Session` a run.

The core (config, reader, validation, plan, runner, results, report, cli) calls only this interface and
names no provider.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..model import Identity as Identity  # re-exported: a provider builds its identities with it

if TYPE_CHECKING:
    from ..checkpoint import Item, Journal
    from ..clock import Clock
    from ..config import Config, Section
    from ..http import HttpClient
    from ..model import RawRow, Row, Table
    from ..outcome import Task, Verdict


@dataclass(frozen=True)
class Field:
    """One input field: its built-in header aliases and its line on the template's Help sheet."""

    name: str
    aliases: tuple[str, ...]  # matched ignoring case, spaces, `_`, `-` and `.` (SPEC §4)
    required: str  # the Help sheet's "Required" cell: "yes", "no", or when
    help_en: str
    help_uk: str
    shown: str = ""  # the other accepted headers the Help sheet lists
    header: str = ""  # the template's column title, when not the field's name

    @property
    def title(self) -> str:
        return self.header or self.name


class Done(Protocol):
    """What `followup`'s test reads of an item an earlier run finished (a journal Item or a saved row's join)."""

    @property
    def state(self) -> str | None: ...
    @property
    def marked(self) -> str: ...
    @property
    def partner_id(self) -> str: ...


class Secrets(Protocol):
    """A provider's `auth` settings: the secret values to keep out of every output."""

    def secrets(self) -> tuple[str, ...]: ...


class Session(ABC):
    """One run's work with the provider: log in, work each row, finish the batched steps, log out."""

    def open(self) -> None:  # noqa: B027 - most providers need no login
        """Log in; RunStopped (or an APIError that outlasted its retries) stops the run before any row."""

    @abstractmethod
    def handle(self, task: Task) -> Verdict:
        """Work one row to its outcome, recorded through `outcome.record`; the verdict feeds the breaker."""

    def owed(self, followups: Sequence[Task]) -> None:  # noqa: B027
        """Take the rows an earlier run sent whose batched follow-up is still owed (`followup`)."""

    def finish(self) -> None:  # noqa: B027
        """Complete the batched steps (after the last row, or on a graceful stop)."""

    def close(self) -> None:  # noqa: B027
        """Log out; best effort."""


class Provider(ABC):
    """A provider's profile (see the module docstring); the registry holds one instance of each."""

    name: ClassVar[str]  # the config's `provider:` and `invite-batch template NAME`
    title: ClassVar[str]  # for people: "EDIN DOCflow"
    actions: ClassVar[tuple[str, ...]] = ("invite",)
    default_base_url: ClassVar[str]
    default_rate: ClassVar[tuple[str, ...]]
    request_id_header: ClassVar[str] = "X-Request-Id"
    fields: ClassVar[tuple[Field, ...]]  # in the template's column order
    required: ClassVar[tuple[str, ...]]  # a file needs a column for at least one of these

    @abstractmethod
    def parse_settings(self, auth: Section, invite: Section, action: str) -> tuple[Secrets, Any]:
        """The provider's `auth` and `invite` settings (frozen dataclasses), problems added to the sections."""

    @abstractmethod
    def rules(self, table: Table, config: Config) -> Callable[[RawRow], Row]:
        """The row check for this file and config: every problem of a row, or its normalised values."""

    @abstractmethod
    def identity(self, values: Mapping[str, str]) -> Identity:
        """The identity of a valid row's values."""

    def reconciles(self, item: Item) -> bool:
        """Whether a row whose item a crash left in flight can be settled by looking it up (else `unknown`)."""
        return False

    def followup(self, config: Config) -> Callable[[Done], bool] | None:
        """With this config, the test of whether an item an earlier run finished still owes a batched step this
        run must do; None when no item can (a resume of 100k rows then asks nothing of them)."""
        return None

    @abstractmethod
    def session(self, config: Config, http: HttpClient, journal: Journal, clock: Clock,
                should_stop: Callable[[], bool]) -> Session:
        """The session that works this run's rows."""

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)
