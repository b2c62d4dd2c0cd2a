"""Notifications through Apprise (SPEC §12): URL checks, their secrets masked, one message to every URL."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import unquote, urlsplit

import apprise

from .logs import redact, register_secret

log = logging.getLogger(__name__)

# Pieces of a URL between these are candidate secrets (a bot token, a password, a webhook path segment).
_DELIMITERS = re.compile(r"[/:@?&=#]+")
# Shorter pieces are not registered (logs.register_secret would warn that they cannot be told from ordinary
# text, and a json:// `-page=1` argument is no secret); the whole URL, which is what gets logged, always is.
_MIN_SECRET = 4
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,19})://")


class _Collect(logging.Filter):
    """Keeps Apprise's warnings and errors out of the log (we write one warning of our own) and remembers them.

    With `debug=False` its debug lines go too: it logs a URL it loads, with the custom headers of json://
    in clear, before we could have registered them.
    """

    def __init__(self, *, debug: bool) -> None:
        super().__init__()
        self.debug = debug
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return self.debug  # at -vv they reach the log, through the redacting handler
        with contextlib.suppress(Exception):
            self.messages.append(redact(record.getMessage()).rstrip(". "))
        return False


@contextlib.contextmanager
def _apprise_quiet(*, debug: bool = False) -> Iterator[_Collect]:
    logger = logging.getLogger(apprise.LOGGER_NAME)
    collect = _Collect(debug=debug)
    logger.addFilter(collect)
    try:
        yield collect
    finally:
        logger.removeFilter(collect)


def _service(url: str) -> apprise.NotifyBase | None:
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url`, without the URL itself; None when it can. Its secrets are registered."""
    register_secret(url)
    with _apprise_quiet() as said:
        service = _service(url)
    if service is not None:
        for secret in _secret_parts(url, service):
            register_secret(secret)
        return None
    m = _SCHEME.match(url)
    if m is None:
        return "not a notification URL; Apprise URLs look like tgram://…, mailtos://…, json://host/path"
    reason = f" ({said.messages[0]})" if said.messages else ""
    return f"Apprise cannot use this {m.group(1)}:// URL{reason}"


def secret_parts(url: str) -> set[str]:
    """The URL and the parts of it that are secret: what Apprise masks itself, and its webhooks' extras."""
    with _apprise_quiet():
        service = _service(url)
    return _secret_parts(url, service)


def _secret_parts(url: str, service: apprise.NotifyBase | None) -> set[str]:
    out = {url}
    if service is not None:
        shown = service.url(privacy=False)  # type: ignore[no-untyped-call]
        hidden = service.url(privacy=True)  # type: ignore[no-untyped-call]
        out.add(shown)
        # Apprise knows which of each service's tokens are private: they are what its privacy form changes.
        out |= _pieces(shown) - _pieces(hidden)
    # ...but not the custom headers (+), query arguments (-) and payload fields (:) of json://, xml://, form://.
    for part in urlsplit(url).query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key)[:1] in "+-:":
            out.add(unquote(value))
    return {s for s in out if len(s) >= _MIN_SECRET}


def has_secret(url: str) -> bool:
    """Whether `url` holds a part Apprise treats as private, or a webhook header, argument or field."""
    return any("://" not in part for part in secret_parts(url))


def _pieces(text: str) -> set[str]:
    return {unquote(p) for p in _DELIMITERS.split(text) if p}


def protect(urls: Iterable[str]) -> None:
    """Register every notification URL and its secret parts with the log masking."""
    for url in urls:
        for secret in secret_parts(url):
            register_secret(secret)


# Apprise's message types (its services show them as colours or icons), by exit code: 1 needs a look, 2-4 a fix.
_KINDS = {0: apprise.NotifyType.SUCCESS, 1: apprise.NotifyType.WARNING}


def send(urls: Sequence[str], *, title: str, body: str, exit_code: int) -> bool:
    """Send one message to every URL; a URL that cannot be reached costs one warning in all, never an error."""
    kind = _KINDS.get(exit_code, apprise.NotifyType.FAILURE)
    failed: list[str] = []
    for i, url in enumerate(urls, start=1):
        with _apprise_quiet() as said:
            service = _service(url)
        if service is not None:
            with _apprise_quiet(debug=True) as said:
                try:
                    if service.notify(body=body, title=title, notify_type=kind):
                        continue
                except Exception as e:  # a plugin's bug must not turn a finished run into a crash
                    said.messages.append(f"{type(e).__name__}: {redact(str(e))}")
        m = _SCHEME.match(url)
        where = f"{m.group(1)}:// (notify URL {i})" if m else f"notify URL {i}"
        failed.append(f"{where}: {said.messages[-1] if said.messages else 'not delivered'}")
    if failed:
        log.warning("notification not delivered to %s; the run's exit code is unchanged", "; ".join(failed))
    else:
        log.debug("notification sent to %d URL(s)", len(urls))
    return not failed
