"""YAML configuration → frozen dataclasses (SPEC §3); every problem collected with its key path."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from . import providers
from .errors import ConfigError
from .providers.base import Provider, Secrets

EXCEL_MAX_ROWS = 1_048_575
DEFAULT_WORKERS = 4
AMBIGUOUS_CHOICES = ("never", "resend")
# How a run can end, for notifications and metrics (SPEC §12); `nothing to do` does not notify by default.
OUTCOMES = ("finished", "finished with problems", "stopped", "failed to start", "nothing to do")
DEFAULT_NOTIFY_ON = OUTCOMES[:4]

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
          "h": 3600.0, "hour": 3600.0}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]*)\s*$")
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True, kw_only=True)
class RateWindow:
    """At most `limit` requests in any `seconds`-long window."""

    limit: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.limit}/{self.seconds:g}s"


def parse_rate(spec: str) -> RateWindow:
    """Parse `5/s`, `100/30s`, `200/min`, `1000/h`; ValueError with a readable message."""
    m = _RATE_RE.match(spec.lower())
    if not m or m.group(3) not in _UNITS:
        raise ValueError(f"not a rate like 5/s, 100/30s, 200/min or 1000/h: {spec!r}")
    limit, count, unit = int(m.group(1)), m.group(2), m.group(3)
    seconds = (float(count) if count else 1.0) * _UNITS[unit or "s"]
    if limit <= 0 or seconds <= 0:
        raise ValueError(f"a rate needs a positive count and window: {spec!r}")
    return RateWindow(limit=limit, seconds=seconds)


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    connect: float = 5.0
    read: float = 30.0


@dataclass(frozen=True, kw_only=True)
class Limits:
    workers: int = DEFAULT_WORKERS
    rate: tuple[RateWindow, ...] = ()
    timeout: Timeouts = Timeouts()
    max_rows: int = EXCEL_MAX_ROWS
    max_cell_length: int = 32_767  # Excel's own cell limit
    max_file_size: int = 200 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    max_retry_after: float = 120.0
    ambiguous: str = "never"  # never | resend: what to do with a change that may have happened (SPEC §7)


@dataclass(frozen=True, kw_only=True)
class SandboxOptions:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    drop_rate: float = 0.0
    rate_limit: tuple[RateWindow, ...] = ()
    session_idle: float = 600.0
    seed: int | None = None
    partners: str | None = None
    ambiguous_rate: float = 0.0  # 500/502/504 to a changing request, processed first about half the time
    page_cap: int | None = None  # edin: at most this many partners per page
    route_cookie: bool = False  # edin: login also sets a load balancer's `route` cookie, needed afterwards
    invitation_date_on: Literal["invite", "mark"] = "invite"  # edin: which call sets invitationDate
    token_ttl: int = 86_400  # diadoc: access token lifetime, seconds (the docs' 2024 drafts: 24 h)
    task_ms: float = 0.0  # diadoc: time before an AcquireCounteragent task's result is ready
    rotate_refresh: bool = False  # diadoc: every refresh answers a new, single-use refresh token
    relation_visible_on: Literal["send", "result"] = "send"  # diadoc: when an invitation shows in GetCounteragent
    diadoc_organizations: str | None = None  # diadoc: a seed file instead of the built-in one


@dataclass(frozen=True, kw_only=True)
class MetricsOptions:
    file: str | None = None  # Prometheus textfile, for node_exporter's textfile collector
    job: str | None = None  # the `job` label; default: the input file's stem
    pushgateway: str | None = None


@dataclass(frozen=True, kw_only=True)
class Config:
    provider: str  # a registered provider's name (batch.providers)
    action: str = "invite"
    base_url: str
    auth: Secrets  # the provider's own settings, parsed by its profile
    invite: Any
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    limits: Limits = Limits()
    retry: RetryPolicy = RetryPolicy()
    stop_after_consecutive_failures: int = 20
    sandbox: SandboxOptions = SandboxOptions()
    ca_bundle: str | None = None
    notify: tuple[str, ...] = field(default=(), repr=False)  # Apprise URLs: they hold tokens and passwords
    notify_on: tuple[str, ...] = DEFAULT_NOTIFY_ON
    metrics: MetricsOptions = MetricsOptions()
    source: str = ""

    @property
    def profile(self) -> Provider:
        return providers.get(self.provider)

    @property
    def embedded(self) -> bool:
        return self.base_url == "embedded"

    def secrets(self) -> tuple[str, ...]:
        return self.auth.secrets() + self.notify

    def fingerprint(self) -> str:
        """SHA-256 of the settings that change what is sent; secrets left out."""
        data = asdict(self)
        data.pop("auth", None)
        data.pop("source", None)
        # Who logs in changes what the provider holds; secrets (the fields kept out of repr) stay out.
        data["auth"] = {f.name: getattr(self.auth, f.name) for f in fields(self.auth) if f.repr}  # type: ignore[arg-type]
        for key in ("notify", "notify_on", "metrics"):  # where the run reports to changes nothing sent
            data.pop(key, None)
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------- loading

class _Problems:
    """Collects problems with their key paths instead of stopping at the first."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}" if path else message)


def expand_env(value: Any, env: Mapping[str, str], problems: _Problems, path: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of the tree."""
    if isinstance(value, dict):
        return {k: expand_env(v, env, problems, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, problems, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.add(path, f"environment variable {name} is not set")
        return ""

    return _VAR_RE.sub(sub, value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Section:
    """Typed reads from one mapping; unknown keys reported when done."""

    def __init__(self, data: Any, path: str, problems: _Problems) -> None:
        self.path, self.problems = path, problems
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.add(path, "must be a mapping")
            data = {}
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def key(self, key: str) -> str:
        """The full path of one of this section's keys, for a problem."""
        return _join(self.path, key)

    def problem(self, key: str, message: str) -> None:
        self.problems.add(self.key(key) if key else self.path, message)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def section(self, key: str) -> Section:
        return Section(self._get(key), _join(self.path, key), self.problems)

    def _typed(self, key: str, default: Any, conv: Callable[[Any], Any], what: str) -> Any:
        raw = self._get(key)
        if raw is None:
            return default
        try:
            return conv(raw)
        except (TypeError, ValueError):
            self.problems.add(_join(self.path, key), f"must be {what}, got {raw!r}")
            return default

    def text(self, key: str, default: str | None = None) -> str | None:
        return self._typed(key, default, _to_str, "text")  # type: ignore[no-any-return]

    def integer(self, key: str, default: int | None = None, *, minimum: int = 1) -> int | None:
        def conv(v: Any) -> int:
            n = _to_int(v)
            if n < minimum:
                raise ValueError
            return n
        return self._typed(key, default, conv, f"a whole number ≥ {minimum}")  # type: ignore[no-any-return]

    def number(self, key: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
        def conv(v: Any) -> float:
            if isinstance(v, bool):
                raise ValueError
            x = float(v)
            if x < minimum or (maximum is not None and x > maximum):
                raise ValueError
            return x
        bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"≥ {minimum:g}"
        return self._typed(key, default, conv, f"a number {bound}")  # type: ignore[no-any-return]

    def flag(self, key: str, default: bool) -> bool:
        return self._typed(key, default, _to_bool, "true or false")  # type: ignore[no-any-return]

    def rates(self, key: str, default: tuple[RateWindow, ...]) -> tuple[RateWindow, ...]:
        raw = self._get(key)
        if raw is None:
            return default
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list):
            self.problems.add(_join(self.path, key), "must be a rate like 5/s or a list of them")
            return default
        out = []
        for i, item in enumerate(items):
            try:
                out.append(parse_rate(str(item)))
            except ValueError as e:
                self.problems.add(f"{_join(self.path, key)}[{i}]", str(e))
        return tuple(out)

    def texts(self, key: str) -> list[str] | None:
        """A list of texts (one text is a list of one); None when absent or not texts (the problem noted)."""
        raw = self._get(key)
        if raw is None:
            return None
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            self.problems.add(_join(self.path, key), "must be a text or a list of texts")
            return None
        return items

    def finish(self) -> None:
        for key in self.data:
            if key not in self.seen:
                self.problems.add(_join(self.path, str(key)), "unknown key")


def _to_str(v: Any) -> str:
    if isinstance(v, dict | list):
        raise ValueError
    return str(v)


def _to_int(v: Any) -> int:
    if isinstance(v, bool) or isinstance(v, float) and not v.is_integer():
        raise ValueError
    return int(str(v).strip()) if isinstance(v, str) else int(v)


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("true", "yes", "on", "1"):
        return True
    if s in ("false", "no", "off", "0"):
        return False
    raise ValueError


def is_loopback(host: str | None) -> bool:
    """Whether `host` names this machine: `localhost` or a loopback address (IPv4 or IPv6)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> str | None:
    """A problem with the base URL, or None. Plain http is allowed only on loopback."""
    if url == "embedded":
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http(s) URL or 'embedded', got {url!r}"
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return f"plain http is refused except on loopback (use https): {url!r}"
    return None


def parse_config(data: Any, *, env: Mapping[str, str] | None = None, source: str = "") -> Config:
    """Build a Config from parsed YAML; raise ConfigError listing every problem."""
    problems = _Problems()
    data = expand_env(data, os.environ if env is None else env, problems)
    top = Section(data, "", problems)

    provider = top.text("provider")
    profile = providers.providers().get(provider or "")
    if profile is None:
        problems.add("provider", f"must be one of {', '.join(providers.names())}, got {provider!r}")
        top.finish()
        raise ConfigError(problems.items, source)
    action = top.text("action", "invite")
    if action not in profile.actions:
        problems.add("action", f"must be {' or '.join(profile.actions)} for {profile.name}, got {action!r}")
        action = "invite"
    base_url = top.text("base_url", profile.default_base_url) or ""
    if (problem := check_base_url(base_url)) is not None:
        problems.add("base_url", problem)

    auth_section, invite_section = top.section("auth"), top.section("invite")
    auth, invite = profile.parse_settings(auth_section, invite_section, action)
    auth_section.finish()
    invite_section.finish()
    columns = _columns(top.section("columns"), profile.field_names)
    limits = _limits(top.section("limits"), profile.default_rate, top)
    retry = _retry(top.section("retry"))
    stop_after = top.integer("stop_after_consecutive_failures", 20) or 20
    sandbox = _sandbox(top.section("sandbox"))
    ca_bundle = top.text("ca_bundle")
    if ca_bundle and not Path(ca_bundle).is_file():
        problems.add("ca_bundle", f"no such file: {ca_bundle}")
    notify, notify_on = _notify(top)
    metrics = _metrics(top.section("metrics"))
    top.finish()

    if problems.items:
        raise ConfigError(problems.items, source)
    return Config(
        provider=profile.name,
        action=action,
        base_url=base_url.rstrip("/"),
        auth=auth,
        invite=invite,
        columns=columns,
        limits=limits,
        retry=retry,
        stop_after_consecutive_failures=stop_after,
        sandbox=sandbox,
        ca_bundle=ca_bundle,
        notify=notify,
        notify_on=notify_on,
        metrics=metrics,
        source=source,
    )


def _columns(s: Section, fields: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for key, value in s.data.items():
        s.seen.add(key)
        path = _join(s.path, str(key))
        if key not in fields:
            s.problems.add(path, f"unknown field; fields are {', '.join(fields)}")
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str | int) for i in items):
            s.problems.add(path, "must be a header name or a list of them")
            continue
        out[str(key)] = tuple(str(i) for i in items)
    return out


def _limits(s: Section, default_rate: tuple[str, ...], top: Section) -> Limits:
    t = s.section("timeout")
    timeouts = Timeouts(connect=t.number("connect", 5.0, minimum=0.001), read=t.number("read", 30.0, minimum=0.001))
    t.finish()
    # max_rows is also accepted at the top level, where an operator may well look for it first.
    max_rows = top.integer("max_rows") or s.integer("max_rows", EXCEL_MAX_ROWS) or EXCEL_MAX_ROWS
    limits = Limits(
        workers=s.integer("workers", DEFAULT_WORKERS) or DEFAULT_WORKERS,
        rate=s.rates("rate", tuple(parse_rate(r) for r in default_rate)),
        timeout=timeouts,
        max_rows=max_rows,
        max_cell_length=s.integer("max_cell_length", 32_767) or 32_767,
        max_file_size=s.integer("max_file_size", 200 * 1024 * 1024) or 200 * 1024 * 1024,
    )
    if limits.workers > 64:
        s.problems.add(_join(s.path, "workers"), "at most 64")
    s.finish()
    return limits


def _retry(s: Section) -> RetryPolicy:
    policy = RetryPolicy(
        attempts=s.integer("attempts", 5) or 5,
        initial_wait=s.number("initial_wait", 0.5),
        max_wait=s.number("max_wait", 30.0),
        max_retry_after=s.number("max_retry_after", 120.0),
        ambiguous=s.text("ambiguous", "never") or "never",
    )
    if policy.ambiguous not in AMBIGUOUS_CHOICES:
        s.problem("ambiguous", f"must be {' or '.join(AMBIGUOUS_CHOICES)}, got {policy.ambiguous!r}")
    s.finish()
    return policy


def _sandbox(s: Section) -> SandboxOptions:
    opts = SandboxOptions(
        latency_ms=s.number("latency_ms", 0.0),
        error_rate=s.number("error_rate", 0.0, maximum=1.0),
        throttle_rate=s.number("throttle_rate", 0.0, maximum=1.0),
        drop_rate=s.number("drop_rate", 0.0, maximum=1.0),
        rate_limit=s.rates("rate_limit", ()),
        session_idle=s.number("session_idle", 600.0, minimum=0.001),
        seed=s.integer("seed", None, minimum=0),
        partners=s.text("partners"),
        ambiguous_rate=s.number("ambiguous_rate", 0.0, maximum=1.0),
        page_cap=s.integer("page_cap", None),
        route_cookie=s.flag("route_cookie", False),
        invitation_date_on=_one_of(s, "invitation_date_on", ("invite", "mark")),  # type: ignore[arg-type]
        token_ttl=s.integer("token_ttl", 86_400) or 86_400,
        task_ms=s.number("task_ms", 0.0, maximum=3_600_000.0),
        rotate_refresh=s.flag("rotate_refresh", False),
        relation_visible_on=_one_of(s, "relation_visible_on", ("send", "result")),  # type: ignore[arg-type]
        diadoc_organizations=s.text("diadoc_organizations"),
    )
    s.finish()
    return opts


def _one_of(s: Section, key: str, allowed: tuple[str, ...]) -> str:
    """A text key limited to `allowed`; the first is the default."""
    value = s.text(key, allowed[0])
    if value not in allowed:
        s.problem(key, f"must be {' or '.join(allowed)}, got {value!r}")
        return allowed[0]
    return value


def _notify(top: Section) -> tuple[tuple[str, ...], tuple[str, ...]]:
    urls = top.texts("notify") or []
    if urls:
        from .notify import url_problem  # Apprise is imported only by configs that notify

        for i, url in enumerate(urls):
            if (problem := url_problem(url)) is not None:
                top.problems.add(f"notify[{i}]", problem)  # never the URL itself: it holds secrets
    outcomes = top.texts("notify_on")
    for i, outcome in enumerate(outcomes or []):
        if outcome not in OUTCOMES:
            top.problems.add(f"notify_on[{i}]", f"must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
    return tuple(urls), DEFAULT_NOTIFY_ON if outcomes is None else tuple(outcomes)


def pushgateway_problem(url: str) -> str | None:
    """A problem with a Pushgateway URL, or None; the URL is shown only when it holds no credentials."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not supported (put an authenticating proxy in front on loopback)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be an http(s) URL like http://pushgateway:9091, got {url!r}"
    return None


def _metrics(s: Section) -> MetricsOptions:
    opts = MetricsOptions(file=s.text("file"), job=s.text("job"), pushgateway=s.text("pushgateway"))
    if opts.job is not None and not opts.job.strip():
        s.problems.add(_join(s.path, "job"), "must not be empty")
    if opts.pushgateway is not None and (problem := pushgateway_problem(opts.pushgateway)) is not None:
        s.problems.add(_join(s.path, "pushgateway"), problem)
    s.finish()
    return opts


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([f"no such file: {p}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read {p}: {e.__class__.__name__}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"not valid YAML{where}"], str(p)) from None
    if not isinstance(data, dict):
        raise ConfigError(["must be a YAML mapping of settings"], str(p))
    config = parse_config(data, env=env, source=str(p))
    # Like an include: a preload file named in a config sits beside that config.
    sb = config.sandbox
    partners, orgs = (str(p.parent / f) if f and not Path(f).is_absolute() else f
                      for f in (sb.partners, sb.diadoc_organizations))
    if (partners, orgs) != (sb.partners, sb.diadoc_organizations):
        config = replace(config, sandbox=replace(sb, partners=partners, diadoc_organizations=orgs))
    return config
