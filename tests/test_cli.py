"""The command line: whole-file and configuration errors are one clear line, exit 2, nothing sent (SPEC §2, §4, §9)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from batch.cli import main
from batch.sandbox import SandboxServer

CONFIG = {"provider": "edin", "auth": {"email": "demo@example.com", "password": "demo-password"},
          "invite": {"contract_template_id": 5551}, "limits": {"rate": []}}


@pytest.fixture
def cfg(tmp_path: Path, sandbox: SandboxServer) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "base_url": sandbox.url}), encoding="utf-8")
    path.chmod(0o600)
    return path


def csv_file(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _zip_bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/worksheets/sheet1.xml", b"\0" * (40 * 1024 * 1024))  # ratio ~1000: refused unread
    return path


BAD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda d: d / "nope.xlsx", "nope.xlsx"),
    "directory": (lambda d: d, ""),
    "unsupported-type": (lambda d: csv_file(d, "x", "in.pdf"), "in.pdf"),
    "not-a-workbook": (lambda d: csv_file(d, "hello, I am text", "fake.xlsx"), "fake.xlsx"),
    "encrypted": (lambda d: _write(d / "enc.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 4000), "enc.xlsx"),
    "empty": (lambda d: csv_file(d, ""), "in.csv"),
    "header-only": (lambda d: csv_file(d, "code;name\n"), "in.csv"),
    "missing-column": (lambda d: csv_file(d, "name;phone\nA;1\n"), "code"),
    "duplicate-headers": (lambda d: csv_file(d, "code;ЄДРПОУ\n1;2\n"), "ЄДРПОУ"),
    "zip-bomb": (_zip_bomb, "bomb.xlsx"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_whole_file_errors_are_one_line_exit_2_and_nothing_sent(
        case: str, tmp_path: Path, cfg: Path, sandbox: SandboxServer, capfd: pytest.CaptureFixture[str]) -> None:
    make, needle = BAD_FILES[case]
    data = tmp_path / "data"
    data.mkdir()
    path = make(data)
    assert main(["run", str(path), "-c", str(cfg)]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and needle in err
    assert sandbox.ledger()["requests"] == 0
    assert not list(data.glob("*.checkpoint.sqlite")) and not list(data.glob("*.results.*"))


def test_too_many_rows_names_the_limit(tmp_path: Path, cfg: Path, capfd: pytest.CaptureFixture[str]) -> None:
    text = cfg.read_text(encoding="utf-8") + "max_rows: 2\n"
    cfg.write_text(text, encoding="utf-8")
    path = csv_file(tmp_path, "code\n" + "".join(f"{40000000 + i}\n" for i in range(3)))
    assert main(["validate", str(path), "-c", str(cfg)]) == 2
    err = capfd.readouterr().err
    assert "in.csv" in err and "2" in err and "Traceback" not in err


def test_config_errors_all_reported_with_exit_2(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("provider: edin\nauth: {email: x}\nlimits: {wokers: 3}\n", encoding="utf-8")
    inp = csv_file(tmp_path, "code\n40000000\n")
    assert main(["run", str(inp), "-c", str(bad)]) == 2
    err = capfd.readouterr().err
    assert "auth.password: is required" in err and "limits.wokers: unknown key" in err
    assert err.count("bad.yaml") == 2 and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["run"], ["run", "x.csv"], ["bogus"], ["run", "x.csv", "-c", "c.yaml", "--rate", "fast"],
    ["run", "x.csv", "-c", "c.yaml", "--workers", "0"], ["template", "sap", "-o", "t.xlsx"],
], ids=["no-input", "no-config", "unknown-command", "bad-rate", "zero-workers", "bad-provider"])
def test_usage_errors_exit_2(argv: list[str], capfd: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.strip()


def test_missing_env_variable_names_it(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDIN_PASSWORD", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text("provider: edin\nauth: {email: a@b.c, password: '${EDIN_PASSWORD}'}\n", encoding="utf-8")
    assert main(["validate", str(csv_file(tmp_path, "code\n40000000\n")), "-c", str(path)]) == 2
    assert "auth.password: environment variable EDIN_PASSWORD is not set" in capfd.readouterr().err


def test_help_has_an_example_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "validate", "status", "report", "template", "sandbox"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        assert "example:" in capsys.readouterr().out, command


def test_template_then_validate_round_trip(tmp_path: Path, cfg: Path) -> None:
    out = tmp_path / "t.xlsx"
    assert main(["template", "edin", "-o", str(out)]) == 0
    assert out.exists()
    # An empty template is a header without data rows: a whole-file error, not a crash.
    assert main(["validate", str(out), "-c", str(cfg)]) == 2


def test_status_and_report_on_a_missing_checkpoint(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "none.sqlite")]) == 2
    assert main(["report", str(tmp_path / "none.sqlite"), "-o", str(tmp_path / "r.xlsx")]) == 2
    err = capfd.readouterr().err
    assert err.count("none.sqlite") == 2 and "Traceback" not in err


def test_python_dash_m_and_console_script_agree(tmp_path: Path) -> None:
    """The real entry points, in a subprocess: a user's mistake never shows a traceback."""
    inp = csv_file(tmp_path, "name\nA\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "base_url": "embedded"}), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "batch", "validate", str(inp), "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "in.csv" in proc.stderr
    version = subprocess.run([sys.executable, "-m", "batch", "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.startswith("invite-batch ")


def test_sandbox_command_serves_on_loopback_until_sigterm() -> None:
    import json
    import signal
    import urllib.error
    import urllib.request

    argv = [sys.executable, "-m", "batch", "sandbox", "--port", "0", "--throttle-rate", "1", "--seed", "7"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            url = next(word for word in line.split() if word.startswith("http://127.0.0.1:"))
            with urllib.request.urlopen(f"{url}/_sandbox/ledger", timeout=5) as resp:
                assert json.load(resp)["requests"] == 0
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(f"{url}/bdoc/partners", timeout=5)  # a throttle rate of 1: always 429
            assert exc.value.code == 429 and exc.value.headers["Retry-After"]
            exc.value.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
    assert proc.returncode == 0


def test_sandbox_command_refuses_a_public_address(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--host", "0.0.0.0"]) == 2
    assert "loopback" in capfd.readouterr().err
