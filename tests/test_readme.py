"""Docs that cannot rot: the README's sandbox commands run exactly as written, with the exit codes it states.

Rules the README follows, so that this test can read it:
* commands are in ```sh blocks; `invite-batch …` lines that use `config/sandbox.yaml` (or
  `config/sandbox-diadoc.yaml`), or are `sandbox`,
  `validate`, `template`, `status` or `report`, are run; other lines (exports, real configs) are shown only;
* a trailing `# exit N` states the exit code (none means 0), and any `N status` after it the run's count
  of that status; a leading `pip install … && ` is dropped;
* every `## ` section starts from a fresh copy of `samples/` and `config/`, its commands run in order;
* `<!-- readme-test: set FILE CELL VALUE -->` edits a workbook cell there, as the operator would by hand;
* `invite-batch sandbox` is started on a free port, asked for its ledger, and stopped with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SETUP = ["pip install . && invite-batch run samples/partners.xlsx -c config/sandbox.yaml",
         "pip install '.[test]' && pytest"]
SETUP_EXIT = 1  # the sample has two invalid rows on purpose (samples/README.md); the README says so below it
SETUP_LINE = 6  # the first set-up command: it cannot carry an `# exit` comment (see test_setup_commands_come_first)
RUN_ALWAYS = {"sandbox", "validate", "template", "status", "report"}
COPIED = ("samples", "config")
LEFT_BEHIND = shutil.ignore_patterns("*.results.*", "*.report.*", "*.checkpoint.sqlite*", "__pycache__")
DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
EXIT = re.compile(r"#.*\bexit (\d)\b")
STATUSES = "sent|skipped|duplicate|invalid|failed|unknown|pending"
CLAIM = re.compile(rf"\b(\d+) ({STATUSES})\b")  # "# exit 1: 22 sent, 2 invalid" in a comment
COUNT = re.compile(rf"\b({STATUSES}) (\d+)\b")  # "sent 22, ..., invalid 2" in the run's last log line


@dataclass
class Step:
    line: int
    args: list[str] = field(default_factory=list)  # a command to run
    expect: int = 0
    claims: dict[str, int] = field(default_factory=dict)  # counts per status the comment states
    edit: tuple[str, str, str] | None = None  # (file, cell, value)

    def __str__(self) -> str:
        what = shlex.join(self.args) if self.args else "set " + " ".join(self.edit or ())
        return f"README.md:{self.line}: {what}"


@dataclass
class Section:
    title: str
    steps: list[Step] = field(default_factory=list)
    blocks: list[list[str]] = field(default_factory=list)  # every ```sh block, as written


def _picked(args: list[str]) -> bool:
    return bool(args) and args[0] == "invite-batch" and len(args) > 1 and (
        args[1] in RUN_ALWAYS or "config/sandbox.yaml" in args or "config/sandbox-diadoc.yaml" in args)


def parse(text: str) -> list[Section]:
    """The README's sections with the steps this test runs, in order."""
    sections = [Section("(top)")]
    fence: list[str] | None = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if fence is not None:
            if line.startswith("```"):
                sections[-1].blocks.append(fence)
                fence = None
                continue
            fence.append(line)
            command = pending + line
            if command.endswith("\\"):
                pending = command[:-1] + " "
                continue
            pending = ""
            command = re.sub(r"^pip install [^&]*&&\s*", "", command.strip())
            args = shlex.split(command, comments=True) if command and not command.startswith("#") else []
            if _picked(args):
                m = EXIT.search(command)
                comment = command[m.start():] if m else ""
                claims = {status: int(n) for n, status in CLAIM.findall(comment)}
                sections[-1].steps.append(Step(number, args, int(m.group(1)) if m else 0, claims))
        elif line == "```sh":
            fence = []
        elif line.startswith("## "):
            sections.append(Section(line[3:].strip()))
        elif m := DIRECTIVE.search(line):
            verb, *rest = shlex.split(m.group(1))
            assert verb == "set" and len(rest) == 3, f"README.md:{number}: unknown directive {m.group(1)!r}"
            sections[-1].steps.append(Step(number, edit=(rest[0], rest[1], rest[2])))
    assert fence is None, "README.md ends inside a code block"
    return sections


SECTIONS = parse(README.read_text(encoding="utf-8"))
RUNNABLE = [s for s in SECTIONS if any(step.args for step in s.steps)]


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "top"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _command(args: list[str]) -> list[str]:
    script = Path(sys.executable).parent / "invite-batch"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "batch"]
    return head + args[1:]


def _run_sandbox(step: Step, folder: Path) -> None:
    """Serve on a free port (not the README's), check it answers, stop it with Ctrl-C."""
    args = list(step.args)
    if "--port" in args:
        args[args.index("--port") + 1] = "0"
    with subprocess.Popen(_command(args), cwd=folder, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), f"{step}: printed {url!r}"
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(url + "/_sandbox/ledger", timeout=5) as answer:
                assert json.load(answer)["requests"] == 0
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=10)
    assert code == step.expect, f"{step}: exit {code}"


def _edit(step: Step, folder: Path) -> None:
    assert step.edit is not None
    name, cell, value = step.edit
    path = folder / name
    wb = openpyxl.load_workbook(path)
    ws = wb.worksheets[0]
    assert ws[cell].value not in (None, value), f"{step}: the cell should hold something to fix"
    ws[cell] = value
    wb.save(path)


def test_setup_commands_come_first() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# invite-batch" and lines[1] == "" and lines[2] and lines[3] == ""
    assert lines[4:8] == ["```sh", *SETUP, "```"]
    assert SECTIONS[0].blocks[0] == SETUP


def test_the_readme_shows_the_whole_walkthrough() -> None:
    """Guards the parser: it must find the commands the operator's guide is built on."""
    ran = [step.args for s in RUNNABLE for step in s.steps if step.args]
    subcommands = {args[1] for args in ran}
    assert {"run", "validate", "template", "status", "report", "sandbox"} <= subcommands
    assert any("--dry-run" in args for args in ran)
    assert sum(1 for s in RUNNABLE for step in s.steps if step.edit) >= 2  # the fix before the second run
    assert len(ran) >= 10


@pytest.mark.parametrize("section", RUNNABLE, ids=[_slug(s.title) for s in RUNNABLE])
def test_section_commands_run(section: Section, tmp_path: Path) -> None:
    for name in COPIED:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=LEFT_BEHIND)
    for step in section.steps:
        if step.edit:
            _edit(step, tmp_path)
            continue
        if step.args[1] == "sandbox":
            _run_sandbox(step, tmp_path)
            continue
        done = subprocess.run(_command(step.args), cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=60, check=False)
        expect = SETUP_EXIT if step.line == SETUP_LINE else step.expect
        assert done.returncode == expect, f"{step}: exit {done.returncode}\n{done.stderr[-2000:]}"
        if step.claims:
            last = [line for line in done.stderr.splitlines() if " in " in line and "results:" in line][-1]
            counts = {status: int(n) for status, n in COUNT.findall(last)}
            assert {k: counts.get(k) for k in step.claims} == step.claims, f"{step}: {last}"
        if "-o" in step.args:
            assert (tmp_path / step.args[step.args.index("-o") + 1]).is_file(), f"{step}: no output file"
