"""Command line: argument parsing and exit codes only (SPEC §2, §9)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .config import Config, RateWindow, SandboxOptions, load_config, parse_rate
from .errors import ConfigError, InviteBatchError, RunStopped, UsageError

log = logging.getLogger("batch")

EPILOG_RUN = """example:
  invite-batch run partners.xlsx -c config/edin.example.yaml --workers 4 --rate 5/s
  invite-batch run partners.xlsx -c config/sandbox.yaml --dry-run
Running the same command again resumes: rows done before are skipped."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so every error is one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _rate(text: str) -> RateWindow:
    try:
        return parse_rate(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {text!r}")
    return n


def _logging_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail (-v shows each request)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="invite-batch", description="Invite every partner in a spreadsheet to an e-document "
                     "platform (EDIN DOCflow, Invoicebox, Kontur.Diadoc), safely and resumably.", formatter_class=fmt,
                     epilog="example:\n  invite-batch run samples/partners.xlsx -c config/sandbox.yaml")
    parser.add_argument("--version", action="version", version=f"invite-batch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="the main job", formatter_class=fmt, epilog=EPILOG_RUN,
                         description="Read, validate, send, record and write results.")
    _input_options(run)
    run.add_argument("--checkpoint", type=Path, help="checkpoint file (default: <input stem>.checkpoint.sqlite)")
    run.add_argument("--dry-run", action="store_true", help="validate and plan; send nothing, write no checkpoint")
    run.add_argument("--limit", type=_positive, help="process at most N rows this run; the rest stay pending")
    run.add_argument("--workers", type=_positive, help="concurrent requests")
    run.add_argument("--rate", type=_rate, action="append", help="rate limit, e.g. 5/s; repeat for more windows")
    run.add_argument("--retry-failed", action="store_true", help="try rows that failed in an earlier run again")
    run.add_argument("--resend-unknown", action="store_true",
                     help="send rows whose outcome is unknown again (may duplicate)")
    run.add_argument("--fresh", action="store_true", help="keep the old checkpoint aside and start a new one")
    run.add_argument("--summary-json", type=Path, help="write a machine-readable summary here")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--notify", action="append", metavar="URL",
                     help="Apprise URL to tell at the end (tgram://…, mailtos://…); repeat for more; "
                          "replaces the config's notify:")
    run.add_argument("--metrics", metavar="PATH", help="write the run's metrics here (Prometheus textfile)")
    run.add_argument("--pushgateway", metavar="URL", help="push the run's metrics to this Prometheus Pushgateway")
    _logging_options(run)

    val = sub.add_parser("validate", help="validate only; nothing is sent", formatter_class=fmt,
                         epilog="example:\n  invite-batch validate partners.xlsx -c config/edin.example.yaml "
                                "-o checked.xlsx")
    _input_options(val)
    _logging_options(val)

    st = sub.add_parser("status", help="counts by status, input fingerprint, runs", formatter_class=fmt,
                        epilog="example:\n  invite-batch status partners.checkpoint.sqlite")
    st.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    _logging_options(st)

    rep = sub.add_parser("report", help="rewrite the results file from a checkpoint", formatter_class=fmt,
                         epilog="example:\n  invite-batch report partners.checkpoint.sqlite -o results.xlsx")
    rep.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    rep.add_argument("-o", "--output", type=Path, required=True, help="results file (.xlsx or .csv)")
    _logging_options(rep)

    tpl = sub.add_parser("template", help="an empty input file with the expected headers", formatter_class=fmt,
                         epilog="example:\n  invite-batch template edin -o partners.xlsx")
    tpl.add_argument("provider", metavar="PROVIDER", help="a registered provider, as in the config's `provider:`")
    tpl.add_argument("-o", "--output", type=Path, required=True, help="file to write (.xlsx or .csv)")
    _logging_options(tpl)

    ui = sub.add_parser("ui", help="a local web page for the same job", formatter_class=fmt,
                        epilog="example:\n  invite-batch ui -c config/sandbox.yaml -c edin.yaml --workdir runs")
    ui.add_argument("-c", "--config", type=Path, action="append", required=True,
                    help="YAML configuration; repeat to offer several (named by the file's stem)")
    ui.add_argument("--workdir", type=Path, default=Path("invite-batch-ui"),
                    help="folder for uploads, checkpoints and results (default: ./invite-batch-ui)")
    ui.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    ui.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    ui.add_argument("--no-browser", action="store_true", help="print the URL only")
    _logging_options(ui)

    sb = sub.add_parser("sandbox", help="local simulator of every provider's API", formatter_class=fmt,
                        epilog="example:\n  invite-batch sandbox --port 8080 --throttle-rate 0.1 --seed 1")
    sb.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    sb.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    sb.add_argument("--latency-ms", type=float, default=0.0)
    sb.add_argument("--error-rate", type=float, default=0.0, help="share of answers that are 503 (nothing processed)")
    sb.add_argument("--ambiguous-rate", type=float, default=0.0,
                    help="share of changing requests answered 500/502/504, processed first half of the time")
    sb.add_argument("--throttle-rate", type=float, default=0.0, help="share of answers that are 429")
    sb.add_argument("--drop-rate", type=float, default=0.0, help="share of requests processed, then dropped")
    sb.add_argument("--rate-limit", type=_rate, action="append", default=[], help="per-account limit, e.g. 10/s")
    sb.add_argument("--session-idle", type=float, default=600.0, help="EDIN session expiry in seconds")
    sb.add_argument("--seed", type=int, help="seed for the faults")
    sb.add_argument("--partners", help="preload partners from a JSON or CSV file")
    sb.add_argument("--page-cap", type=int, help="EDIN: at most N partners per page, whatever limit asks")
    sb.add_argument("--route-cookie", action="store_true",
                    help="EDIN: login also sets a load balancer's route cookie, needed by every later call")
    sb.add_argument("--invitation-date-on", choices=("invite", "mark"), default="invite",
                    help="EDIN: which call sets a partner's invitationDate")
    sb.add_argument("--token-ttl", type=int, default=86_400, help="Diadoc: access token lifetime in seconds")
    sb.add_argument("--task-ms", type=float, default=0.0, help="Diadoc: time before a task's result is ready")
    sb.add_argument("--rotate-refresh", action="store_true",
                    help="Diadoc: every refresh answers a new refresh token; the old one stops working")
    sb.add_argument("--relation-visible-on", choices=("send", "result"), default="send",
                    help="Diadoc: an invitation shows in GetCounteragent at the send, or when its task ends")
    sb.add_argument("--diadoc-organizations", help="Diadoc: seed organisations from this JSON file")
    _logging_options(sb)
    return parser


def _input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, metavar="INPUT", help="spreadsheet: .xlsx .xls .ods or .csv")
    p.add_argument("-c", "--config", type=Path, required=True, help="YAML configuration")
    p.add_argument("-o", "--output", type=Path, help="results file (.xlsx or .csv)")
    p.add_argument("--sheet", help="worksheet to read (default: the first)")


def _load(args: argparse.Namespace) -> Config:
    from .logs import register_secret

    for url in getattr(args, "notify", None) or ():
        register_secret(url)  # before anything could log it
    config = load_config(args.config)
    if getattr(args, "notify", None):
        config = dataclasses.replace(config, notify=tuple(args.notify))
    if getattr(args, "metrics", None) or getattr(args, "pushgateway", None):
        metrics = dataclasses.replace(config.metrics, file=args.metrics or config.metrics.file,
                                      pushgateway=args.pushgateway or config.metrics.pushgateway)
        config = dataclasses.replace(config, metrics=metrics)

    for secret in config.secrets():
        register_secret(secret)
    if not config.embedded:  # the sandbox's demo password protects nothing
        from .secrets import warn_if_exposed

        warn_if_exposed(args.config)
    limits = config.limits
    if getattr(args, "workers", None):
        limits = dataclasses.replace(limits, workers=args.workers)
    if getattr(args, "rate", None):
        limits = dataclasses.replace(limits, rate=tuple(args.rate))
    return dataclasses.replace(config, limits=limits)


def _cmd_run(args: argparse.Namespace, *, dry_run: bool = False) -> int:
    from .runner import RunOptions, summary_line
    from .tell import run_and_tell

    config = _load(args)
    opts = RunOptions(
        input=args.input, output=args.output, checkpoint=getattr(args, "checkpoint", None), sheet=args.sheet,
        dry_run=dry_run or getattr(args, "dry_run", False), limit=getattr(args, "limit", None),
        retry_failed=getattr(args, "retry_failed", False), resend_unknown=getattr(args, "resend_unknown", False),
        fresh=getattr(args, "fresh", False), summary_json=getattr(args, "summary_json", None),
        progress=not getattr(args, "no_progress", True) and not args.quiet)
    report = run_and_tell(config, opts)
    log.info(summary_line(report.summary, report.output))
    return report.exit_code


def _cmd_status(args: argparse.Namespace) -> int:
    from .report import print_status

    print_status(args.checkpoint, sys.stdout)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import rewrite_results

    path = rewrite_results(args.checkpoint, args.output)
    log.info("results written to %s", path)
    return 0


def _cmd_template(args: argparse.Namespace) -> int:
    from .providers import get
    from .results import write_template

    write_template(get(args.provider), args.output)
    log.info("template written to %s", args.output)
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from .ui import serve

    configs: dict[str, Config] = {}
    for path in args.config:
        if path.stem in configs:
            raise UsageError(f"-c {path}: two configurations are named {path.stem!r}; rename one")
        configs[path.stem] = _load(argparse.Namespace(config=path))
    # uvicorn re-raises Ctrl-C/SIGTERM after its graceful shutdown: for the page that is the normal end.
    with contextlib.suppress(KeyboardInterrupt):
        serve(configs, args.workdir, host=args.host, port=args.port, open_browser=not args.no_browser)
    return 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from .sandbox import serve

    for name in ("error_rate", "throttle_rate", "drop_rate", "ambiguous_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise UsageError(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.page_cap is not None and args.page_cap < 1:
        raise UsageError("--page-cap must be a whole number ≥ 1")
    if args.token_ttl < 1 or not 0 <= args.task_ms <= 3_600_000:
        raise UsageError("--token-ttl must be ≥ 1 second, --task-ms between 0 and 3600000")
    options = SandboxOptions(latency_ms=args.latency_ms, error_rate=args.error_rate, throttle_rate=args.throttle_rate,
                             drop_rate=args.drop_rate, rate_limit=tuple(args.rate_limit),
                             session_idle=args.session_idle, seed=args.seed, partners=args.partners,
                             ambiguous_rate=args.ambiguous_rate, page_cap=args.page_cap,
                             route_cookie=args.route_cookie, invitation_date_on=args.invitation_date_on,
                             token_ttl=args.token_ttl, task_ms=args.task_ms, rotate_refresh=args.rotate_refresh,
                             relation_visible_on=args.relation_visible_on,
                             diadoc_organizations=args.diadoc_organizations)
    try:
        serve(options, host=args.host, port=args.port)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _cmd_run,
    "validate": lambda a: _cmd_run(a, dry_run=True),
    "status": _cmd_status,
    "report": _cmd_report,
    "template": _cmd_template,
    "sandbox": _cmd_sandbox,
    "ui": _cmd_ui,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `invite-batch`; returns the exit code of SPEC §9."""
    from .logs import setup_logging

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        setup_logging()
        log.error("%s (see --help)", e)
        return e.exit_code
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    setup_logging(verbosity=-1 if args.quiet else args.verbose, fmt=args.log_format)
    # Outside the send phase (which installs its own handlers) nothing is in flight, so SIGTERM stops
    # like Ctrl-C: at once, exit 3, no traceback (a big file takes seconds to read and plan).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        for problem in e.problems:
            log.error("config %s: %s", e.source or args.config, problem)
        return e.exit_code
    except InviteBatchError as e:
        log.error("%s", e)
        return e.exit_code
    except KeyboardInterrupt:
        # Before sending starts, or a second Ctrl-C while sending: the checkpoint holds every committed step.
        log.error("stopped by a signal; run the same command again to resume")
        return RunStopped.exit_code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
