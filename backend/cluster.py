"""``process --cluster``: the units of ``backend.segments`` as Ray tasks (the only Ray import).

Each task runs one unit (a whole file, or one segment's window) through the whole pipeline
inside its worker process and returns a small dict: frames never go through Ray's object
store, only paths and windows do. A worker process keeps its ``BatchRunner`` (and so its
loaded detector) between tasks. Ray retries a task whose worker died (``max_retries``); the
unit's files are published by rename, so a retry or a duplicate never mixes frames. Only
the driver (``SegmentedRun``) writes the manifest and joins the parts.

CUDA tasks take a GPU (``num_gpus=1``) and CPU tasks ``performance.max_processing_workers``
CPUs, so a mixed cluster keeps both kinds busy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import signal
import time
from collections import deque
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the user's machines
if "RAY_AUTH_MODE" not in os.environ and (
        os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").is_file()):
    # a head started where a token exists uses it, and refuses a driver that sends none;
    # Ray reads the mode when it is imported
    os.environ["RAY_AUTH_MODE"] = "token"

import ray  # noqa: E402

from backend.errors import InputError, PtimError, UsageError  # noqa: E402

log = logging.getLogger("ptim.cluster")

MAX_RETRIES = 3
_POLL_S = 0.5
_RUNNERS: dict[str, object] = {}  # in a worker process: settings key -> BatchRunner


def _runner_for(settings_json: str):
    """This worker process's runner for these settings (the detector loads once)."""
    key = hashlib.sha256(settings_json.encode()).hexdigest()
    runner = _RUNNERS.get(key)
    if runner is None:
        from backend.batch import BatchRunner
        from config.schema import Settings

        runner = BatchRunner(Settings.model_validate(json.loads(settings_json)), quiet=True)
        _RUNNERS[key] = runner
    return runner


@ray.remote(num_cpus=0)
class _Attempts:
    """Counts the attempts at each unit and who runs them (for retries and the log)."""

    def __init__(self) -> None:
        self.starts: dict[str, list[tuple[int, str]]] = {}

    def started(self, key: str, pid: int, node: str) -> None:
        self.starts.setdefault(key, []).append((pid, node))

    def snapshot(self) -> dict[str, list[tuple[int, str]]]:
        return self.starts


def _unit_task(settings_json: str, unit, attempts) -> dict:
    """One unit in this worker; errors come back as ``{"error", "kind"}``, never raised."""
    from backend.segments import run_unit

    node = ray.get_runtime_context().get_node_id()
    attempts.started.remote(unit.target, os.getpid(), node)
    try:
        if unit.source != "demo" and not Path(unit.source).exists():
            raise InputError(f"{unit.source}: cannot be read on node {platform.node()} "
                             "(inputs and outputs must be on storage every node sees)")
        stats = run_unit(_runner_for(settings_json), unit)
    except PtimError as exc:
        return {"error": str(exc), "input": isinstance(exc, InputError)}
    stats["node"] = node
    return stats


_remote_unit = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=False)(_unit_task)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayExecutor:
    """Runs units on the Ray cluster named by ``address``: ``local`` starts one on this
    machine for the run, ``auto`` finds one (``RAY_ADDRESS`` first, as Ray does), and
    ``HOST:PORT`` joins that one. UsageError when it cannot connect."""

    def __init__(self, address: str, settings) -> None:
        self.address = address
        self.settings = settings
        self.started_s = 0.0
        prev = signal.getsignal(signal.SIGTERM)
        t0 = time.perf_counter()
        env = {k: v for k, v in os.environ.items() if k.startswith("PTIM_")}
        kw = {"log_to_driver": False, "logging_level": logging.ERROR,
              "runtime_env": {"env_vars": env} if env else None}
        try:
            if address == "local":
                ray.init(include_dashboard=False, **kw)
            else:
                ray.init(address=address, **kw)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError...
            raise UsageError(f"--cluster {address}: cannot connect to a Ray cluster "
                             f"({_first_line(exc)})") from None
        finally:
            # ray.init replaces the SIGTERM handler; ours stops the run cleanly
            if signal.getsignal(signal.SIGTERM) is not prev and prev is not None:
                with contextlib.suppress(ValueError):  # not the main thread
                    signal.signal(signal.SIGTERM, prev)
        self.started_s = time.perf_counter() - t0
        self._attempts = _Attempts.remote()
        log.debug("connected to the Ray cluster (%s) in %.1f s: %s", address, self.started_s,
                  ray.cluster_resources())

    def _slots(self) -> tuple[int, int, int]:
        """(GPU task slots, CPU task slots, CPUs per CPU task)."""
        res = ray.cluster_resources()
        per = max(1, int(self.settings.performance.max_processing_workers))
        provider = self.settings.detector.provider
        gpus = int(res.get("GPU", 0)) if provider in ("auto", "cuda") else 0
        if provider == "cuda" and gpus == 0:
            raise UsageError("--provider cuda: the Ray cluster has no GPU")
        cpus = 0 if provider == "cuda" else max(1, int((res.get("CPU", 1) - gpus) // per))
        return gpus, cpus, per

    def _settings_json(self, provider: str) -> str:
        data = self.settings.model_dump(mode="json")
        data["detector"]["provider"] = provider
        return json.dumps(data, sort_keys=True)

    def run(self, units, on_result, wanted) -> dict:
        """Submit ``units`` as slots free up, hand each outcome to ``on_result``; returns
        ``{"nodes", "retries"}``. Ctrl+C re-raises; the tasks in flight end with the driver's
        job."""
        gpu_slots, cpu_slots, per = self._slots()
        gpu_json, cpu_json = self._settings_json("cuda"), self._settings_json("cpu")
        pending = deque(units)
        inflight: dict = {}
        nodes: set[str] = set()
        seen: dict[str, int] = {}
        last_poll = 0.0
        try:
            while pending or inflight:
                while pending:
                    gpu_busy = sum(1 for _, g in inflight.values() if g)
                    if gpu_busy < gpu_slots:
                        gpu = True
                    elif len(inflight) - gpu_busy < cpu_slots:
                        gpu = False
                    else:
                        break
                    unit = pending.popleft()
                    if not wanted(unit):
                        continue
                    task = _remote_unit.options(num_gpus=1, num_cpus=1) if gpu else \
                        _remote_unit.options(num_cpus=per)
                    ref = task.remote(gpu_json if gpu else cpu_json, unit, self._attempts)
                    inflight[ref] = (unit, gpu)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=_POLL_S)
                now = time.monotonic()
                if now - last_poll > _POLL_S:
                    last_poll = now
                    self._log_starts(seen, {str(u.target): u for u, _ in inflight.values()})
                for ref in ready:
                    unit, _ = inflight.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        # the worker died on every attempt: that input fails, the run goes on
                        outcome: object = InputError(
                            f"{unit.label}: failed on the cluster after {MAX_RETRIES + 1} "
                            f"attempts ({_first_line(exc)})")
                    else:
                        if "error" in out:
                            if not out["input"]:
                                raise PtimError(out["error"])
                            outcome = InputError(out["error"])
                        else:
                            nodes.add(out["node"])
                            outcome = out
                    on_result(unit, outcome)
        except BaseException:
            # no ray.cancel: cancelling a task whose reply is on its way trips a check inside
            # Ray (task_manager "Check failed") and aborts the driver; the driver's tasks end
            # with its job, and the next run removes their temporary parts
            raise
        starts = self._snapshot()
        retries = sum(max(0, len(v) - 1) for v in starts.values())
        return {"nodes": nodes, "retries": retries}

    def _snapshot(self) -> dict:
        try:
            return ray.get(self._attempts.snapshot.remote(), timeout=30)
        except ray.exceptions.RayError:
            return {}

    def _log_starts(self, seen: dict[str, int], running: dict) -> None:
        for key, starts in self._snapshot().items():
            if len(starts) > seen.get(key, 0) and key in running:
                for pid, node in starts[seen.get(key, 0):]:
                    log.debug("%s: running in worker pid %d on node %s (attempt %d)",
                              running[key].label, pid, node[:12], len(starts))
                seen[key] = len(starts)

    def close(self) -> None:
        """Leave the cluster (and stop it when it was started for this run)."""
        ray.shutdown()
