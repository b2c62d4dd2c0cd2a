"""A run's metrics for Prometheus (SPEC §12): a textfile for node_exporter, or a push to a Pushgateway."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, pushadd_to_gateway
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from .model import Status

log = logging.getLogger(__name__)

LAST_SUCCESS = "invite_batch_last_success_timestamp_seconds"
PUSH_TIMEOUT = 10.0


@dataclass(frozen=True, kw_only=True)
class RunMetrics:
    """The figures of one finished (or failed) run."""

    job: str
    provider: str
    rows: Mapping[str, int]  # by status
    requests: Mapping[str, int]  # HTTP answers by status code, "none" for no answer
    duration: float
    finished: float  # Unix time
    exit_code: int

    @property
    def succeeded(self) -> bool:
        return self.exit_code in (0, 1)


class _Collector:
    """Yields the series of SPEC §12, each labelled with `provider` and `job`."""

    def __init__(self, run: RunMetrics, last_success: float | None) -> None:
        self.run, self.last_success = run, last_success

    def collect(self) -> Iterator[Metric]:
        run, base = self.run, ["provider", "job"]
        values = [run.provider, run.job]
        rows = GaugeMetricFamily("invite_batch_rows", "Input rows by status at the end of the last run.",
                                 labels=[*base, "status"])
        for status in Status:
            rows.add_metric([*values, status.value], run.rows.get(status.value, 0))
        yield rows
        answers = CounterMetricFamily("invite_batch_requests", "HTTP answers of the last run by status code "
                                      "(code=none: no answer).", labels=[*base, "code"])
        for code in sorted({"none", *run.requests}):
            answers.add_metric([*values, code], run.requests.get(code, 0))
        yield answers
        for name, text, value in (
            ("invite_batch_duration_seconds", "How long the last run took.", run.duration),
            ("invite_batch_last_run_timestamp_seconds", "When the last run ended (Unix time).", run.finished),
            ("invite_batch_exit_code", "The last run's exit code (SPEC §9).", run.exit_code),
        ):
            yield _gauge(name, text, base, values, value)
        if self.last_success is not None:
            yield _gauge(LAST_SUCCESS, "When a run last exited 0 or 1 (Unix time).", base, values, self.last_success)


def _gauge(name: str, text: str, labels: list[str], values: list[str], value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, text, labels=labels)
    g.add_metric(values, value)
    return g


def registry(run: RunMetrics, last_success: float | None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(run, last_success))
    return reg


def previous_success(path: Path) -> float | None:
    """The last-success time in an earlier textfile, if there is one that says it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        log.warning("metrics: cannot read the previous %s (%s); the last success is not carried over",
                    path, type(e).__name__)
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError:
        log.warning("metrics: the previous %s is not in the Prometheus text format; "
                    "the last success is not carried over", path)
    return None


def write_textfile(path: Path, run: RunMetrics) -> None:
    """Write the textfile atomically: a temporary file beside it, then a rename.

    Not prometheus_client's write_to_textfile: its file takes the process's umask, and under the systemd
    recipe's UMask=0077 node_exporter (another user) could not read it. Metrics hold no secret: 0644.
    """
    last = run.finished if run.succeeded else previous_success(path)
    data = generate_latest(registry(run, last))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not *.prom: the collector never reads it half-done
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # the mode given to open() is cut by the umask
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def push(gateway: str, run: RunMetrics) -> None:
    """Push-add with the grouping key `job`.

    A push-add replaces only the metric names it carries, so a run that did not succeed leaves the
    last-success series out and the gateway keeps the value an earlier run pushed: nothing to read back.
    """
    reg = registry(run, run.finished if run.succeeded else None)
    pushadd_to_gateway(gateway, job=run.job, registry=reg, timeout=PUSH_TIMEOUT)


def publish(run: RunMetrics, *, file: str | None, pushgateway: str | None) -> None:
    """Textfile and/or push; a failure is one warning each and never changes the exit code."""
    if file:
        try:
            write_textfile(Path(file), run)
        except OSError as e:
            log.warning("metrics not written to %s: %s", file, e.strerror or type(e).__name__)
    if pushgateway:
        try:
            push(pushgateway, run)
        except Exception as e:  # urllib's URLError/HTTPError, a bad URL: the run itself is done
            log.warning("metrics not pushed to %s: %s", pushgateway, e)
