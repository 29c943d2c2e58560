"""The recovery decorator retries, falls back, counts and logs once per reason."""

from __future__ import annotations

import json
import logging

import pytest

from backend.errors import Category, ErrorStats, InputError, Strategy, recoverable


def test_retry_then_success_counts_retries():
    stats = ErrorStats()
    calls = []

    @recoverable(Category.IO, Strategy.RESTART, retries=2, stats=stats)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("device busy")
        return "ok"

    assert flaky() == "ok"
    assert stats.counts() == {"io.retry": 2}


def test_fallback_receives_error_and_is_counted():
    stats = ErrorStats()
    freed = []

    def fallback(x, error):
        return f"fallback {x} after {type(error).__name__}"

    @recoverable(Category.MEMORY, Strategy.DEGRADE, retries=1, fallback=fallback, stats=stats,
                 on_retry=lambda x, error: freed.append(x))
    def alloc(x):
        raise MemoryError("no room")

    assert alloc(7) == "fallback 7 after MemoryError"
    assert freed == [7]
    assert stats.counts() == {"memory.retry": 1, "memory.degrade": 1}


def test_no_fallback_reraises():
    @recoverable(Category.PROCESSING, Strategy.DEGRADE, stats=ErrorStats())
    def boom():
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        boom()


def test_user_errors_pass_through_untouched():
    stats = ErrorStats()

    @recoverable(Category.IO, Strategy.FALLBACK, fallback=lambda error: None, stats=stats)
    def missing():
        raise InputError("x.mp4: no such file")

    with pytest.raises(InputError):
        missing()
    assert stats.total() == 0


def test_logged_once_per_reason_and_report(tmp_path, caplog):
    stats = ErrorStats()
    with caplog.at_level(logging.WARNING, logger="ptim.errors"):
        for _ in range(5):
            stats.record(Category.GPU, Strategy.FALLBACK, "session", "CUDA failed to load")
    assert stats.counts() == {"gpu.fallback": 5}
    assert len([r for r in caplog.records if "CUDA failed" in r.getMessage()]) == 1
    report = stats.write_report(tmp_path)
    data = json.loads(report.read_text())
    assert data["counts"] == {"gpu.fallback": 5}
    assert len(data["events"]) == 5
    assert report.name.startswith("error_report_")
