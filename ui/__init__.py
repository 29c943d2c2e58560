"""Qt widgets of the desktop app: main window, preview, control panel, dashboard.

Widgets show state and emit intent (signals); ``apps/`` wires them to the pipeline.
Nothing here imports the backend's pipeline stages, OpenCV or onnxruntime.
``DashboardWidget`` is imported lazily because pyqtgraph is slow to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ui.controls import ControlPanel
from ui.main_window import MainWindow, ShortcutsDialog
from ui.preview import PreviewWidget

if TYPE_CHECKING:
    from ui.dashboard import DashboardWidget

__all__ = ["ControlPanel", "DashboardWidget", "MainWindow", "PreviewWidget", "ShortcutsDialog"]


def __getattr__(name: str) -> Any:
    if name == "DashboardWidget":
        from ui.dashboard import DashboardWidget

        return DashboardWidget
    raise AttributeError(f"module 'ui' has no attribute {name!r}")
