"""Configuration: env substitution, typed keys, unknown keys, every problem reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batch.config import RateWindow, check_base_url, load_config, parse_config, parse_rate
from batch.errors import ConfigError

EDIN: dict[str, Any] = {"provider": "edin", "auth": {"email": "a@b.c", "password": "pw"},
                        "invite": {"contract_template_id": 5551}}
IBOX: dict[str, Any] = {"provider": "invoicebox", "auth": {"token": "t"}}


@pytest.mark.parametrize(("spec", "limit", "seconds"), [
    ("5/s", 5, 1.0), ("100/30s", 100, 30.0), ("200/min", 200, 60.0), ("1000/h", 1000, 3600.0),
    ("10/2min", 10, 120.0), (" 7 / s ", 7, 1.0), ("3/0.5s", 3, 0.5),
], ids=["per-second", "per-30s", "per-minute", "per-hour", "two-minutes", "spaces", "half-second"])
def test_parse_rate(spec: str, limit: int, seconds: float) -> None:
    assert parse_rate(spec) == RateWindow(limit=limit, seconds=seconds)


@pytest.mark.parametrize("spec", ["5", "x/s", "5/fortnight", "0/s", "5/0s", ""],
                         ids=["no-window", "not-number", "bad-unit", "zero", "zero-window", "empty"])
def test_parse_rate_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(spec)


def test_defaults_per_provider() -> None:
    edin, ibox = parse_config(EDIN, env={}), parse_config(IBOX, env={})
    assert edin.base_url == "https://doc.edin.ua"
    assert edin.limits.rate == (RateWindow(limit=5, seconds=1.0),)
    assert ibox.base_url == "https://api.invoicebox.ru"
    assert ibox.limits.rate == (RateWindow(limit=100, seconds=30.0),)
    assert edin.invite.status_batch_size == 100 and edin.retry.attempts == 5


def test_env_substitution_with_default() -> None:
    data = {**EDIN, "auth": {"email": "${E}", "password": "${P:-fallback}"},
            "limits": {"workers": "${W:-3}"}}
    config = parse_config(data, env={"E": "op@firm.ua"})
    assert config.auth.email == "op@firm.ua"
    assert config.auth.password == "fallback"
    assert config.limits.workers == 3


def test_every_problem_reported_with_its_key_path() -> None:
    data = {
        "provider": "edin",
        "auth": {"email": "${MISSING_EMAIL}"},
        "invite": {"contract_template_id": 1, "owner_company_id": 2, "status_batch_size": 0},
        "limits": {"workers": "many", "rate": ["5/s", "fast"], "timeuot": 3},
        "retry": {"attempts": 1.5},
        "colums": {},
    }
    with pytest.raises(ConfigError) as exc:
        parse_config(data, env={}, source="x.yaml")
    problems = exc.value.problems
    expected = [
        "auth.email: environment variable MISSING_EMAIL is not set",
        "auth.password: is required for edin",
        "invite: give contract_template_id or owner_company_id, not both",
        "invite.status_batch_size: must be a whole number ≥ 1",
        "limits.workers: must be a whole number ≥ 1",
        "limits.rate[1]: not a rate",
        "limits.timeuot: unknown key",
        "retry.attempts: must be a whole number",
        "colums: unknown key",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert "x.yaml" in str(exc.value)


@pytest.mark.parametrize(("data", "message"), [
    ({"provider": "ftp"}, "provider: must be one of diadoc, edin, invoicebox"),
    ({**IBOX, "action": "mark"}, "action: must be invite for invoicebox"),
    ({**IBOX, "invite": {"partner_id": "not-a-uuid"}}, "invite.partner_id: must be a UUID"),
    ({**IBOX, "invite": {"type": "sms"}}, "invite.type: only 'email'"),
    ({**IBOX, "invite": {"contract_template_id": 1}}, "invite.contract_template_id: is not an option for invoicebox"),
    ({**EDIN, "invite": {"partner_id": "x"}}, "invite.partner_id: is not an option for edin"),
    ({**EDIN, "auth": {"email": "a", "password": "b", "token": "t"}}, "auth.token: is for invoicebox"),
    ({"provider": "invoicebox", "auth": {}}, "auth.token: is required"),
    ({**EDIN, "base_url": "http://doc.edin.ua"}, "base_url: plain http is refused"),
    ({**EDIN, "columns": {"codee": ["X"]}}, "columns.codee: unknown field"),
    ({**EDIN, "sandbox": {"error_rate": 2}}, "sandbox.error_rate: must be a number between 0 and 1"),
    ({**EDIN, "limits": {"workers": 1000}}, "limits.workers: at most 64"),
    ({**EDIN, "ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle: no such file"),
    ({**EDIN, "invite": {"mark_status": "maybe"}}, "invite.mark_status: must be true or false"),
], ids=["provider", "ibox-mark", "ibox-uuid", "ibox-type", "ibox-edin-key", "edin-ibox-key", "edin-token",
        "ibox-no-token", "plain-http", "column-field", "sandbox-rate", "workers-cap", "ca-bundle", "bool"])
def test_single_problems(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, env={})
    assert any(p.startswith(message) for p in exc.value.problems), exc.value.problems


@pytest.mark.parametrize("partner_id", [
    "1234-5678-1234-5678-1234567812345678",  # 32 hex digits, but not in the 8-4-4-4-12 form the API takes
    "{01771534-1a57-f184-dee3-ebeb91dded76}",
    "01771534-1a57-f184-dee3-ebeb91dded7",
], ids=["hyphens-elsewhere", "braces", "35-characters"])
def test_the_config_takes_exactly_the_partner_ids_a_row_may_hold(partner_id: str, tmp_path: Path) -> None:
    # Regression: config took what uuid.UUID() parses, validation then refused every row for it (one rule now).
    with pytest.raises(ConfigError, match="invite.partner_id: must be a UUID"):
        parse_config({**IBOX, "invite": {"partner_id": partner_id}}, env={})


def test_an_upper_case_partner_id_is_normalised_like_a_row_s() -> None:
    config = parse_config({**IBOX, "invite": {"partner_id": "01771534-1A57-F184-DEE3-EBEB91DDED76"}}, env={})
    assert config.invite.partner_id == "01771534-1a57-f184-dee3-ebeb91dded76"


@pytest.mark.parametrize(("url", "ok"), [
    ("https://doc.edin.ua", True), ("embedded", True), ("http://127.0.0.1:8080", True),
    ("http://localhost:1", True), ("http://[::1]:8080", True), ("http://10.0.0.1", False),
    ("ftp://x", False), ("doc.edin.ua", False),
], ids=["https", "embedded", "loopback-v4", "localhost", "loopback-v6", "private-http", "ftp", "no-scheme"])
def test_base_url_rules(url: str, ok: bool) -> None:
    assert (check_base_url(url) is None) is ok


def test_secrets_not_in_repr_or_fingerprint() -> None:
    config = parse_config({**EDIN, "auth": {"email": "a@b.c", "password": "hunter2-secret"}}, env={})
    assert "hunter2-secret" not in repr(config)
    assert config.secrets() == ("hunter2-secret",)
    other = parse_config({**EDIN, "auth": {"email": "a@b.c", "password": "other"}}, env={})
    assert config.fingerprint() == other.fingerprint()


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider: [edin\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("edin\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_shipped_configs_load(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[1] / "config"
    monkeypatch.setenv("EDIN_EMAIL", "op@firm.ua")
    monkeypatch.setenv("EDIN_PASSWORD", "x")
    monkeypatch.setenv("INVOICEBOX_TOKEN", "t")
    assert load_config(root / "sandbox.yaml").embedded
    assert load_config(root / "edin.example.yaml").invite.contract_template_id == 5551
    assert load_config(root / "invoicebox.example.yaml").provider == "invoicebox"
    for name in ("DIADOC_CLIENT_ID", "DIADOC_CLIENT_SECRET", "DIADOC_REFRESH_TOKEN"):
        monkeypatch.setenv(name, "x")
    assert load_config(root / "diadoc.example.yaml").invite.result_timeout == 120
    sandbox = load_config(root / "sandbox-diadoc.yaml")
    assert sandbox.embedded and sandbox.provider == "diadoc" and sandbox.sandbox.task_ms > 0


def test_sandbox_partners_path_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "c.yaml"
    path.write_text("provider: invoicebox\nbase_url: embedded\nauth: {token: t}\nsandbox: {partners: p.json}\n",
                    encoding="utf-8")
    assert load_config(path).sandbox.partners == str(tmp_path / "conf" / "p.json")
