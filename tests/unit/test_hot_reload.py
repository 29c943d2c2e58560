"""Hot reload with a real watchdog observer on real files: edits, renames, errors, threads."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.errors import ErrorStats
from config import ConfigError, ConfigManager, Settings, load_settings, user_config_path
from tests.timing import WAIT_S, budget


class Recorder:
    """A subscriber that records notifications and sets Events when one matches."""

    def __init__(self) -> None:
        self.calls: list[tuple[Settings, str | None, str]] = []
        self._lock = threading.Lock()
        self._waiters: list[tuple[Callable[[Settings, str | None], bool], threading.Event]] = []

    def __call__(self, settings: Settings, error: str | None) -> None:
        with self._lock:
            self.calls.append((settings, error, threading.current_thread().name))
            for pred, event in self._waiters:
                if pred(settings, error):
                    event.set()

    def expect(self, pred: Callable[[Settings, str | None], bool]) -> threading.Event:
        """An Event set by the first later notification that satisfies pred."""
        event = threading.Event()
        with self._lock:
            self._waiters.append((pred, event))
        return event


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + WAIT_S
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(threading.enumerate()) - before == set()


@pytest.fixture
def watched(tmp_path: Path, no_leaked_threads: None) -> Iterator[tuple[ConfigManager, Recorder]]:
    user_config_path(tmp_path).write_text("mask:\n  type: blur\n")
    mgr = ConfigManager(tmp_path, env={}, stats=ErrorStats())
    rec = Recorder()
    mgr.subscribe(rec)
    mgr.start_watching()  # its start-up check finds the file unchanged: it notifies nobody
    rec.calls.clear()
    try:
        yield mgr, rec
    finally:
        mgr.stop_watching()


def write_in_place(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_by_rename(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_vim_style(path: Path, text: str) -> None:
    backup = path.with_name(path.name + "~")
    os.replace(path, backup)
    path.write_text(text, encoding="utf-8")
    backup.unlink()


@pytest.mark.parametrize("writer", [write_in_place, write_by_rename, write_vim_style])
def test_edit_is_applied_within_a_second(
    watched: tuple[ConfigManager, Recorder], writer: Callable[[Path, str], None]
) -> None:
    mgr, rec = watched
    start = time.monotonic()
    seen = rec.expect(lambda s, e: s.mask.type == "solid")
    writer(mgr.config_file, "mask:\n  type: solid\n  scale: 2.0\n")
    assert seen.wait(WAIT_S)
    assert time.monotonic() - start < budget(1.0)
    assert mgr.settings.mask.type == "solid" and mgr.settings.mask.scale == 2.0
    assert mgr.last_error is None
    assert mgr.sources["mask.scale"] == str(mgr.config_file)
    # Listeners run on the reload thread, never the caller's: the GUI must marshal.
    assert rec.calls[-1][2] == "ptim-config-reload"


def test_invalid_edit_keeps_last_good_and_reports(watched: tuple[ConfigManager, Recorder]) -> None:
    mgr, rec = watched
    good = mgr.settings
    seen = rec.expect(lambda s, e: e is not None)
    write_by_rename(mgr.config_file, "mask:\n  type: banana\n")
    assert seen.wait(WAIT_S)
    settings, error, _ = rec.calls[-1]
    assert settings is good and mgr.settings is good
    assert error is not None
    assert f"{mgr.config_file}: mask.type = 'banana': must be one of" in error
    assert mgr.last_error == error

    seen = rec.expect(lambda s, e: e is not None and "not valid YAML" in e)
    write_in_place(mgr.config_file, "mask:\n  type: [broken\n")
    assert seen.wait(WAIT_S)
    assert mgr.settings is good

    cleared = rec.expect(lambda s, e: e is None)
    write_by_rename(mgr.config_file, "mask:\n  type: blur\n")  # same settings as before
    assert cleared.wait(WAIT_S)  # the error clears even though no value changed
    assert mgr.last_error is None and mgr.settings == good


def test_env_and_flags_still_win_after_reload(tmp_path: Path, no_leaked_threads: None) -> None:
    mgr = ConfigManager(tmp_path, env={"PTIM_MASK__TYPE": "pixelate"},
                        overrides={"mask.shape": "box"}, stats=ErrorStats())
    rec = Recorder()
    mgr.subscribe(rec)
    mgr.start_watching()
    try:
        seen = rec.expect(lambda s, e: s.mask.scale == 2.5)
        write_by_rename(mgr.config_file,
                        "mask:\n  type: solid\n  shape: ellipse\n  scale: 2.5\n")
        assert seen.wait(WAIT_S)
        assert (mgr.settings.mask.type, mgr.settings.mask.shape) == ("pixelate", "box")
        assert mgr.sources["mask.type"] == "env PTIM_MASK__TYPE"
    finally:
        mgr.stop_watching()


def test_own_saves_do_not_notify_again(watched: tuple[ConfigManager, Recorder]) -> None:
    mgr, rec = watched
    for i in range(3):
        mgr.update({"mask.scale": 1.0 + i / 10})
    time.sleep(1.0)  # several debounce periods: any echo of the saves would show up
    assert [(s.mask.scale, e) for s, e, _ in rec.calls] == [(1.0, None), (1.1, None), (1.2, None)]
    assert mgr.settings.mask.scale == 1.2


def test_deleting_the_file_means_defaults(watched: tuple[ConfigManager, Recorder]) -> None:
    mgr, rec = watched
    seen = rec.expect(lambda s, e: s == Settings())
    mgr.config_file.unlink()
    assert seen.wait(WAIT_S)


def test_stress_rewrites_then_final_value_wins(
    watched: tuple[ConfigManager, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    mgr, rec = watched
    caplog.set_level(logging.ERROR, logger="ptim")
    path = mgr.config_file
    i = 0
    while i < 100:  # about 2 s of an edit every 20 ms
        if i % 2:
            text = "mask:\n  scale: 9.0\n" if i % 4 == 1 else "mask:\n  scale: [\n"
        else:
            text = f"mask:\n  type: solid\n  scale: {0.5 + (i % 20) / 10:.1f}\n"
        (write_in_place if i % 3 else write_by_rename)(path, text)
        i += 1
        time.sleep(0.02)
    done = rec.expect(lambda s, e: e is None and s.mask.scale == 2.75)
    start = time.monotonic()
    write_by_rename(path, "mask:\n  type: image\n  scale: 2.75\n")
    assert done.wait(WAIT_S)
    assert time.monotonic() - start < budget(1.0)
    assert mgr.settings == load_settings(path, env={}).settings
    assert mgr.last_error is None
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_stop_watching_joins_its_threads(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    mgr = ConfigManager(tmp_path, env={}, stats=ErrorStats())
    for _ in range(2):  # restartable
        mgr.start_watching()
        mgr.start_watching()  # second call is a no-op
        assert mgr.is_watching
        assert len(set(threading.enumerate()) - before) >= 2
        mgr.stop_watching()
        assert not mgr.is_watching
        assert set(threading.enumerate()) - before == set()
    mgr.stop_watching()  # harmless when not watching


def test_reload_errors_are_counted(tmp_path: Path) -> None:
    stats = ErrorStats()
    mgr = ConfigManager(tmp_path, env={}, stats=stats)
    mgr.config_file.write_text("mask:\n  scale: 9.0\n")
    mgr.reload()
    assert stats.counts() == {"config.fallback": 1}
    assert mgr.settings == Settings()
    mgr.reload()  # same bad content: not counted or reported twice
    assert stats.counts() == {"config.fallback": 1}


def test_update_while_file_is_broken_does_not_overwrite_it(tmp_path: Path) -> None:
    mgr = ConfigManager(tmp_path, env={}, stats=ErrorStats())
    broken = "mask:\n  type: [unfinished edit\n"
    mgr.config_file.write_text(broken)
    mgr.reload()
    mgr.update({"mask.scale": 2.0})
    assert mgr.settings.mask.scale == 2.0
    assert mgr.config_file.read_text() == broken
    assert mgr.last_error is not None and "not saved" in mgr.last_error


def test_app_can_start_with_a_broken_file_and_recover(tmp_path: Path) -> None:
    path = user_config_path(tmp_path)
    path.write_text("mask:\n  scale: 9.0\n")
    with pytest.raises(ConfigError):
        ConfigManager(tmp_path, env={}, stats=ErrorStats())
    mgr = ConfigManager(tmp_path, env={"PTIM_MASK__TYPE": "solid"}, stats=ErrorStats(),
                        tolerate_bad_file=True)
    assert mgr.settings.mask.type == "solid" and mgr.settings.mask.scale == 1.3
    assert mgr.last_error is not None and "mask.scale = 9.0" in mgr.last_error
    mgr.update({"mask.feather": 0.1})
    assert path.read_text() == "mask:\n  scale: 9.0\n"  # the user's file is not clobbered
    path.write_text("mask:\n  scale: 2.0\n")
    mgr.reload()
    assert mgr.last_error is None
    assert (mgr.settings.mask.scale, mgr.settings.mask.type) == (2.0, "solid")
