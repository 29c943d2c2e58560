"""QThread wrappers around the backend's plain worker loops."""

from __future__ import annotations

import threading

from PyQt6.QtCore import QThread, pyqtSignal


class LoopThread(QThread):
    """Runs ``loop.run(stop_event)`` on a QThread; ``stop()`` sets the event and joins."""

    def __init__(self, loop, name: str, parent=None) -> None:
        super().__init__(parent)
        self.loop = loop
        self.stop_event = threading.Event()
        self.setObjectName(name)

    def run(self) -> None:  # noqa: D102 - QThread entry
        self.loop.run(self.stop_event)

    def stop(self, timeout_ms: int = 3000) -> bool:
        """Ask the loop to end and wait for it; True when it ended in time."""
        self.stop_event.set()
        return self.wait(timeout_ms)


class DetectorLoader(QThread):
    """Loads the ONNX detector off the GUI thread (it takes a few hundred ms)."""

    loaded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, settings, pool, parent=None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.pool = pool
        self.setObjectName("ptim-load-detector")

    def run(self) -> None:  # noqa: D102 - QThread entry
        try:
            from backend.pipeline import build_detector

            self.loaded.emit(build_detector(self.settings, self.pool))
        except Exception as exc:  # noqa: BLE001 - shown in the status bar; frames stay obscured
            self.failed.emit(str(exc))
