"""Logging setup and redaction: no secret survives into any line, in text or JSON."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from batch import logs
from batch.logs import MASK, redact, register_secret, setup_logging

SECRET = "pa$$w0rd-Зірка"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    register_secret(SECRET)
    root = logging.getLogger()
    level = root.level
    yield buf
    root.setLevel(level)
    for h in [h for h in root.handlers if getattr(h, "_invite_batch_handler", False)]:
        root.removeHandler(h)
    logging.getLogger("batch").setLevel(logging.NOTSET)


def test_secret_in_message_is_masked(stream: io.StringIO) -> None:
    setup_logging(stream=stream)
    logging.getLogger("batch.test").info(f"password is {SECRET}")
    out = stream.getvalue()
    assert SECRET not in out
    assert f"password is {MASK}" in out


def test_secret_in_args_is_masked(stream: io.StringIO) -> None:
    setup_logging(stream=stream)
    logging.getLogger("batch.test").warning("login with %s for %s", SECRET, "demo@example.com")
    out = stream.getvalue()
    assert SECRET not in out
    assert "demo@example.com" in out


def test_secret_in_exception_traceback_is_masked(stream: io.StringIO) -> None:
    setup_logging(stream=stream)
    try:
        raise RuntimeError(f"bad credentials {SECRET}")
    except RuntimeError:
        logging.getLogger("batch.test").exception("login failed")
    out = stream.getvalue()
    assert "RuntimeError: bad credentials ***" in out
    assert SECRET not in out


def test_json_format_masks_and_keeps_extra(stream: io.StringIO) -> None:
    setup_logging(stream=stream, fmt="json")
    logging.getLogger("batch.test").info("token %s", SECRET, extra={"row": 7, "note": f"x{SECRET}"})
    line = json.loads(stream.getvalue().strip())
    assert line["message"] == f"token {MASK}"
    assert line["level"] == "INFO" and line["logger"] == "batch.test" and line["ts"].endswith("+00:00")
    assert line["row"] == 7 and line["note"] == f"x{MASK}"


def test_json_format_masks_exception(stream: io.StringIO) -> None:
    setup_logging(stream=stream, fmt="json")
    try:
        raise ValueError(SECRET)
    except ValueError:
        logging.getLogger("batch.test").error("boom", exc_info=True)
    line = json.loads(stream.getvalue().strip())
    assert "ValueError: ***" in line["exc"] and SECRET not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Cookie: SID=abc123; lang=uk", "Cookie: SID=***; lang=uk"),
        ("Set-Cookie: SID=f00-ba7.x; Path=/", "Set-Cookie: SID=***; Path=/"),
        ("Authorization: Bearer eyJhbGciOi.J9.x_y-z=", "Authorization: Bearer ***"),
        ("authorization: bearer tok", "authorization: bearer ***"),
        ("nothing secret here", "nothing secret here"),
        (f"url-encoded: {'pa%24%24w0rd-%D0%97%D1%96%D1%80%D0%BA%D0%B0'}", f"url-encoded: {MASK}"),
    ],
    ids=["cookie-header", "set-cookie", "bearer", "bearer-lowercase", "untouched", "url-encoded-secret"],
)
def test_patterns(text: str, expected: str) -> None:
    register_secret(SECRET)
    assert redact(text) == expected


def test_longer_secret_masked_whole() -> None:
    register_secret("qzxv")
    register_secret("qzxv-much-longer")
    assert redact("x qzxv-much-longer y") == "x *** y"


def test_a_short_secret_is_masked_whole_not_inside_words(caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Masking is process-wide: these short secrets are forgotten after the test ("1.0 s" stays readable).
    monkeypatch.setattr(logs, "_short", set())
    monkeypatch.setattr(logs, "_short_re", None)
    register_secret("s")  # a one-character token: masking every "s" would garble every line (`sen*** 0`)
    assert redact("sent 5, skipped 0; token s") == f"sent 5, skipped 0; token {MASK}"
    assert "cannot be told from ordinary text" in caplog.text and "'s'" not in caplog.text
    register_secret("k3y9")  # short, but not unsafe: masked whole, no warning
    assert redact("key=k3y9&k3y9x k3y9") == f"key={MASK}&k3y9x {MASK}"
    assert caplog.text.count("cannot be told") == 1


def test_empty_secret_is_ignored() -> None:
    register_secret("")
    register_secret(None)
    assert redact("plain") == "plain"


@pytest.mark.parametrize(
    ("verbosity", "shown", "hidden"),
    [(-1, ["warning"], ["info", "debug"]), (0, ["warning", "info"], ["debug"]), (1, ["info", "debug"], [])],
    ids=["quiet", "default", "verbose"],
)
def test_verbosity(stream: io.StringIO, verbosity: int, shown: list[str], hidden: list[str]) -> None:
    setup_logging(verbosity=verbosity, stream=stream)
    logger = logging.getLogger("batch.test")
    logger.debug("debug line")
    logger.info("info line")
    logger.warning("warning line")
    out = stream.getvalue()
    assert all(f"{w} line" in out for w in shown)
    assert not any(f"{w} line" in out for w in hidden)


def test_setup_twice_keeps_one_handler(stream: io.StringIO) -> None:
    setup_logging(stream=stream)
    setup_logging(stream=stream)
    logging.getLogger("batch.test").info("once")
    assert stream.getvalue().count("once") == 1


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        setup_logging(fmt="xml")
