"""The page's jobs: one folder per uploaded spreadsheet in the workdir, run by the very same `run_and_tell` as the CLI.

A job folder holds `input.<ext>` (the upload, under a name we choose), the checkpoint and the results that
`run_batch` puts next to it, and `job.json` (the original file name for display, the configuration's name,
the last phase and counts) so that the page lists earlier jobs after a restart.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO

from ..config import Config
from ..errors import CheckpointLockedError, InviteBatchError, RunStopped
from ..logs import redact
from ..model import RowResult, Status
from ..results import default_output_path
from ..runner import RunOptions, Watch
from ..tell import run_and_tell

log = logging.getLogger("batch.ui")

EXTENSIONS = (".xlsx", ".xls", ".ods", ".csv")
# Problems first in the validation and results tables (SPEC §11).
RANK = {Status.INVALID: 0, Status.FAILED: 1, Status.UNKNOWN: 2, Status.DUPLICATE: 3, Status.PENDING: 4,
        Status.SKIPPED: 5, Status.SENT: 6}
_ID_CHARS = frozenset("0123456789abcdef")


class Phase:
    """Where a job is; the last four are also the word the page's status element ends with."""

    VALIDATING = "validating"
    VALIDATED = "validated"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    ERROR = "error"


BUSY = (Phase.VALIDATING, Phase.RUNNING)


class JobBusyError(InviteBatchError):
    """The job is validating or running already (the page's own guard; the checkpoint lock is the real one)."""

    exit_code = CheckpointLockedError.exit_code


@dataclass
class Job:
    id: str
    folder: Path
    filename: str  # the uploaded name, shown on the page only; never part of a path
    config_name: str
    ext: str
    created: float = field(default_factory=time.time)
    phase: str = Phase.VALIDATED
    counts: dict[str, int] = field(default_factory=dict)
    message: str = ""
    exit_code: int | None = None
    started: float = 0.0  # when sending began (time.time), for rows per second
    ended: float = 0.0  # when the last validation or run ended
    watch: Watch = field(default_factory=Watch)
    ordered: list[RowResult] = field(default_factory=list)  # the rows, problems first, after a phase ends
    thread: threading.Thread | None = None

    @property
    def input(self) -> Path:
        return self.folder / f"input{self.ext}"

    @property
    def results(self) -> Path:
        return default_output_path(self.input)

    def live_counts(self) -> dict[str, int]:
        """Counts per status, read from the running job's results as the workers change them."""
        if not self.watch.results or self.phase not in BUSY:  # once a phase ends its counts are kept
            return dict(self.counts)
        by_status = Counter(map(attrgetter("status"), self.watch.results))
        return {s.value: by_status.get(s, 0) for s in Status}

    def progress(self) -> dict[str, Any]:
        """What the page polls while a job runs: phase, counts, rows per second, seconds left."""
        counts = self.live_counts()
        done, total = self.watch.done, self.watch.total
        elapsed = time.time() - self.started if self.started else 0.0
        rate = done / elapsed if elapsed > 0 and done else 0.0
        left = (total - done) / rate if rate else None
        return {"phase": self.phase, "counts": counts, "done": done, "total": total,
                "rate": round(rate, 2), "left": None if left is None else round(left), "message": self.message}

    def save(self) -> None:
        data = {"filename": self.filename, "config": self.config_name, "ext": self.ext, "created": self.created,
                "phase": self.phase, "counts": self.counts, "message": self.message, "exit_code": self.exit_code,
                "ended": self.ended}
        write_private(self.folder / "job.json", json.dumps(data, ensure_ascii=False).encode())


def write_private(path: Path, data: bytes | BinaryIO) -> None:
    """Write a workdir file readable by its owner only (0600), whatever the umask; a file object is streamed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        if isinstance(data, bytes):
            fh.write(data)
        else:
            shutil.copyfileobj(data, fh, 1 << 20)
    os.chmod(path, 0o600)


def lock_down(folder: Path) -> None:
    """Files the engine wrote (checkpoint, results) become 0600 as well."""
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o600)


class Jobs:
    """The jobs of one workdir; at most one validation or run per job at a time."""

    def __init__(self, workdir: Path, configs: Mapping[str, Config]) -> None:
        self.workdir, self.configs = workdir, configs
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o700)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        for meta in self.workdir.glob("*/job.json"):
            try:
                data = json.loads(meta.read_text(encoding="utf-8"))
                job = Job(id=meta.parent.name, folder=meta.parent, filename=str(data["filename"]),
                          config_name=str(data["config"]), ext=str(data["ext"]), created=float(data["created"]),
                          phase=str(data["phase"]), counts=dict(data["counts"]), message=str(data["message"]),
                          exit_code=data["exit_code"], ended=float(data.get("ended") or 0))
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("%s: not a job the page can show (%s)", meta.parent, err)
                continue
            if job.phase in BUSY:  # the process that ran it ended mid-way; the checkpoint resumes it
                job.phase, job.message = Phase.STOPPED, "the page was closed during this run; send again to resume"
            self._jobs[job.id] = job

    def all(self) -> list[Job]:
        return sorted(self._jobs.values(), key=attrgetter("created"), reverse=True)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id) if _ID_CHARS.issuperset(job_id) else None

    def create(self, filename: str, config_name: str, data: bytes | BinaryIO) -> Job:
        """A new job folder holding the upload as `input<ext>`; the extension is the only part of the name used."""
        ext = Path(filename).suffix.lower()
        job_id = secrets.token_hex(8)
        folder = self.workdir / job_id
        folder.mkdir(mode=0o700)
        job = Job(id=job_id, folder=folder, filename=filename[-200:], config_name=config_name, ext=ext)
        write_private(job.input, data)
        job.save()
        with self._lock:
            self._jobs[job_id] = job
        return job

    def validate(self, job: Job) -> None:
        """A dry run in the background: every row checked, nothing sent, the results file written."""
        self._start(job, Phase.VALIDATING, dry_run=True)

    def send(self, job: Job) -> None:
        """The run (or its resume) in the background, as `invite-batch run` would do it."""
        self._start(job, Phase.RUNNING, dry_run=False)

    def stop(self, job: Job) -> None:
        job.watch.stop.set()

    def wait(self, job: Job, timeout: float | None = None) -> None:
        if job.thread is not None:
            job.thread.join(timeout)

    def shutdown(self) -> None:
        """The page is closing: stop every run gracefully (in-flight requests finish) and wait for it."""
        busy = [job for job in self._jobs.values() if job.phase in BUSY]
        for job in busy:
            self.stop(job)
        for job in busy:
            self.wait(job)

    def _start(self, job: Job, phase: str, *, dry_run: bool) -> None:
        with self._lock:
            if job.phase in BUSY:
                raise JobBusyError("this spreadsheet is already being validated or sent")
            job.phase, job.message, job.exit_code = phase, "", None
            job.watch, job.ordered = Watch(), []
            job.started = time.time()
            job.thread = threading.Thread(target=self._work, args=(job, dry_run), name=f"ui-{job.id}", daemon=True)
        job.save()
        job.thread.start()

    def _work(self, job: Job, dry_run: bool) -> None:
        config = self.configs[job.config_name]
        opts = RunOptions(input=job.input, dry_run=dry_run)
        phase, message, code = (Phase.VALIDATED if dry_run else Phase.FINISHED), "", 0
        try:
            code = run_and_tell(config, opts, watch=job.watch).exit_code  # notifies and publishes metrics as `run` does
        except RunStopped as err:
            phase, message, code = Phase.STOPPED, redact(str(err)), err.exit_code
        except InviteBatchError as err:
            phase, message, code = Phase.ERROR, redact(str(err)), err.exit_code
        except Exception as err:  # a bug must reach the page as a line, not kill the thread silently
            log.exception("job %s failed", job.id)
            phase, message, code = Phase.ERROR, f"internal error: {err.__class__.__name__}", 2
        results = job.watch.results
        job.ordered = sorted(results, key=lambda r: RANK[r.status])  # stable: input order within a status
        by_status = Counter(map(attrgetter("status"), results))
        job.counts = {s.value: by_status.get(s, 0) for s in Status} if results else {}
        job.phase, job.message, job.exit_code, job.ended = phase, message, code, time.time()
        lock_down(job.folder)
        job.save()
