"""The ``process`` command line: arguments to settings, logging, error lines, exit codes.

``run_process(args)`` is the entry ``main.py`` calls; the work is ``backend.batch``'s runner,
``backend.segments`` (``--segment-seconds``, ``--resume``) and ``backend.cluster``
(``--cluster``, the only module that imports Ray).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from backend.batch import BatchRunner, JobStats, _AtomicText, check_writable, plan_jobs
from backend.errors import STATS, PtimError, UsageError

log = logging.getLogger("ptim.batch")

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_OUTPUT, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 2, 3, 4, 5, 130

_FLAG_KEYS = {
    "mask": "mask.type",
    "mask_image": "mask.image_path",
    "mask_shape": "mask.shape",
    "mask_scale": "mask.scale",
    "blur_strength": "mask.blur_strength",
    "threshold": "detector.threshold",
    "detector_size": "detector.input_size",
    "min_face": "detector.min_face_px",
    "fine_period": "detector.fine_period",
    "keep_audio": "output.keep_audio",
    "provider": "detector.provider",
    "precision": "detector.precision",
    "replace_face": "mask.replace_face",
    "source_face": "mask.source_face",
    "recognition_model": "mask.recognition_model",
}


def _settings_from_args(args):
    from config.manager import load_settings
    from config.paths import user_config_path, user_data_dir

    overrides = {key: getattr(args, attr) for attr, key in _FLAG_KEYS.items()
                 if getattr(args, attr, None) is not None}
    if getattr(args, "config", None):
        cfg = Path(args.config)
        if cfg.is_dir():
            raise UsageError(f"{cfg}: is a folder, not a config file")
        if not cfg.is_file():
            raise UsageError(f"{cfg}: config file not found")
    else:
        cfg = user_config_path(user_data_dir())
        cfg = cfg if cfg.is_file() else None
    labels = {key: "--" + attr.replace("_", "-") for attr, key in _FLAG_KEYS.items()}
    loaded = load_settings(cfg, env=os.environ, overrides=overrides, override_labels=labels)
    return loaded.settings


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ptim: %(message)s"))
    root = logging.getLogger("ptim")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if verbose:
        from config.paths import user_data_dir

        try:
            logdir = user_data_dir()
            logdir.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(logdir / "playatewsidentitymasker.log", encoding="utf-8")
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(fh)
        except OSError:
            pass
    from backend.avlog import route_libav_logs

    # FFmpeg's own lines: log file and console under --verbose, else nowhere (the error says it)
    route_libav_logs(root.handlers if verbose else [])


def _error(msg: str) -> None:
    # one prefixed line per problem (a config file may have several), so every error line
    # can be found by its prefix and none looks like stray output
    lines = [ln for ln in str(msg).splitlines() if ln.strip()] or ["unknown error"]
    sys.stderr.write("".join(f"ptim: error: {ln}\n" for ln in lines))


def _report_recoveries() -> None:
    """Log the recovery counts; keep an error report when frames were affected.

    A CPU fallback alone (CUDA listed but not loadable) is already one log line and would
    otherwise leave a report behind every run.
    """
    counts = STATS.counts()
    if not counts:
        return
    summary = ", ".join(f"{k}={v}" for k, v in counts.items())
    log.debug("recoveries: %s", summary)
    if set(counts) - {"gpu.fallback"}:
        from config.paths import user_data_dir

        with contextlib.suppress(OSError):  # a report must never fail a finished run
            path = STATS.write_report(user_data_dir())
            log.info("recoveries: %s (details: %s)", summary, path)


class _Signals:
    """Ctrl+C and SIGTERM while ``process`` runs (SIGTERM behaves like Ctrl+C).

    Until a runner is attached a signal raises KeyboardInterrupt at once (nothing is written
    yet). Once one is, the first signal asks it to stop (``BatchRunner.interrupt``: it raises
    at its next check, where cleanup is whole); a second raises at once. A SIGINT the
    shell ignores (``cmd &``) stays ignored.
    """

    def __init__(self) -> None:
        self.runner: BatchRunner | None = None
        self._prev: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return  # an embedding caller's thread: leave signals alone
        for sig in (signal.SIGINT, signal.SIGTERM):
            prev = signal.getsignal(sig)
            if sig == signal.SIGINT and prev is not signal.default_int_handler:
                continue
            self._prev[sig] = prev
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.runner is not None and not self.runner.interrupted:
            self.runner.interrupt()
            return
        raise KeyboardInterrupt

    def restore(self) -> None:
        """Put back the handlers that were there before."""
        for sig, prev in self._prev.items():
            signal.signal(sig, prev)


def run_process(args) -> int:
    """Entry of ``main.py process``; returns the exit code."""
    _setup_logging(args.verbose, args.quiet)
    signals = _Signals()
    boxes: _AtomicText | None = None
    runner: BatchRunner | None = None
    try:
        settings = _settings_from_args(args)
        # a refused replacement model stops here: no frame read, no output folder made
        from backend.replace import prepare_run

        prepare_run(settings)
        plan = plan_jobs(args.inputs, args.output)
        if args.boxes:
            bpath = Path(args.boxes)
            check_writable(bpath)
            boxes = _AtomicText(bpath)
        for job in plan.jobs:  # before the model loads: a bad -o fails at once
            check_writable(job.output)
        segmented = _segmenting(args)
        if segmented is not None:
            return _run_segmented(args, settings, plan, *segmented, signals=signals)
        runner = BatchRunner(settings, quiet=args.quiet, boxes=boxes)
        signals.runner = runner  # before the loader thread starts importing
        runner.preload()
        failures = list(plan.skipped)
        for path, reason in plan.skipped:
            _error(f"{path}: skipped: {reason}")
        total = JobStats()
        done = 0
        t0 = time.perf_counter()
        def report(job, st, exc) -> None:
            nonlocal done
            if exc is not None:
                if len(plan.jobs) == 1 and not plan.skipped:
                    raise exc
                _error(str(exc))
                failures.append((job.source, str(exc)))
                return
            done += 1
            total.frames += st.frames
            total.faces += st.faces
            total.fail_closed += st.fail_closed
            if not args.quiet:
                # faces the replace mask could not replace were masked irreversibly instead
                fell = (f", {st.masked_instead} masked instead of replaced"
                        if settings.mask.type == "replace" else "")
                print(f"{job.output}: {st.frames} frames, {st.faces} faces, "
                      f"{st.fail_closed} fail-closed{fell}, "
                      f"{st.frames / max(st.seconds, 1e-9):.1f} fps")

        runner.run_jobs(plan.jobs, report)
        signals.runner = None  # from here a signal raises at once
        if runner.interrupted:  # signalled after the last check: the outputs are whole
            raise KeyboardInterrupt
        if boxes is not None:
            boxes.commit()
            boxes = None
        elapsed = time.perf_counter() - t0
        if not args.quiet and len(plan.jobs) > 1:
            print(f"total: {done} of {len(plan.jobs) + len(plan.skipped)} inputs, {total.frames} "
                  f"frames, {total.faces} faces, {total.fail_closed} fail-closed, "
                  f"{total.frames / max(elapsed, 1e-9):.1f} fps")
        _report_recoveries()
        if failures:
            return EXIT_PARTIAL if done else EXIT_INPUT
        return EXIT_OK
    except KeyboardInterrupt:
        if boxes is not None:
            boxes.abort()
        _error("interrupted; no partial output was left")
        return EXIT_INTERRUPTED
    except PtimError as exc:
        if boxes is not None:
            boxes.abort()
        log.debug("error", exc_info=True)
        _error(str(exc))
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the user gets one line, the log the traceback
        if boxes is not None:
            boxes.abort()
        log.debug("unexpected error", exc_info=True)
        _error(f"{type(exc).__name__}: {exc} (run with --verbose for details)")
        return 1
    finally:
        if runner is not None:
            runner.close()
        signals.restore()


def _segmenting(args) -> tuple[str | None, float] | None:
    """(cluster address or None, segment seconds) when the run goes by units, else None."""
    cluster = getattr(args, "cluster", None)
    seconds = getattr(args, "segment_seconds", None)
    resume, restart = getattr(args, "resume", False), getattr(args, "restart", False)
    if cluster is None and seconds is None:
        if resume or restart:
            raise UsageError(f"{'--resume' if resume else '--restart'} needs --cluster or "
                             "--segment-seconds")
        return None
    if seconds is not None and not seconds > 0:
        raise UsageError(f"--segment-seconds {seconds}: must be more than 0")
    if getattr(args, "boxes", None):
        raise UsageError("--boxes: not available with --cluster or --segment-seconds")
    from backend.segments import DEFAULT_SECONDS

    return cluster, seconds if seconds is not None else DEFAULT_SECONDS


def _run_segmented(args, settings, plan, cluster: str | None, seconds: float,
                   signals: _Signals | None = None) -> int:
    """Run the plan's jobs as units (segments of long files), locally or on a Ray cluster."""
    from backend.segments import LocalExecutor, SegmentedRun

    for path, reason in plan.skipped:
        _error(f"{path}: skipped: {reason}")

    def on_job(res) -> None:
        if res.error:
            _error(res.error)
            return
        if args.quiet:
            return
        how = (f"{res.frames / max(res.seconds, 1e-9):.1f} fps" if res.seconds
               else "already made by the interrupted run")
        parts = f", {res.units} segments ({res.reused} reused)" if res.units else ""
        print(f"{res.output}: {res.frames} frames, {res.faces} faces, "
              f"{res.fail_closed} fail-closed{parts}, {how}", flush=True)

    run = SegmentedRun(settings, plan.jobs, seconds, resume=args.resume, restart=args.restart,
                       quiet=args.quiet, on_job=on_job)
    runner = None
    try:
        if cluster is None:
            runner = BatchRunner(settings, quiet=True)
            if signals is not None:
                signals.runner = runner
            runner.preload()
            executor = LocalExecutor(runner)
        else:
            from backend.cluster import RayExecutor

            executor = RayExecutor(cluster, settings)
        try:
            summary = run.run(executor)
            if runner is not None and runner.interrupted:
                raise KeyboardInterrupt
        finally:
            if hasattr(executor, "close"):
                executor.close()
    except KeyboardInterrupt:
        _error("interrupted; no partial output was left (finished segments are kept: "
               "--resume finishes the run)")
        return EXIT_INTERRUPTED
    finally:
        if runner is not None:
            runner.close()
    done = [r for r in summary.jobs if r.done]
    total = JobStats()
    for r in done:
        total.frames += r.frames
        total.faces += r.faces
        total.fail_closed += r.fail_closed
    if not args.quiet and (len(summary.jobs) > 1 or cluster is not None):
        where = (f", {len(summary.nodes)} node{'s' if len(summary.nodes) != 1 else ''}, "
                 f"{summary.retries} retr{'ies' if summary.retries != 1 else 'y'}"
                 if cluster is not None else "")
        print(f"total: {len(done)} of {len(summary.jobs) + len(plan.skipped)} inputs, "
              f"{total.frames} frames, {total.faces} faces, {total.fail_closed} fail-closed, "
              f"{total.frames / max(summary.seconds, 1e-9):.1f} fps{where}")
    _report_recoveries()
    if plan.skipped or len(done) < len(summary.jobs):
        return EXIT_PARTIAL if done else EXIT_INPUT
    return EXIT_OK

