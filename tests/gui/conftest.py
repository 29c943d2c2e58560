"""GUI test fixtures: every test must close the windows it opens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_leaked_windows(qapp: object) -> Iterator[None]:
    """Fail a test that leaves a visible top-level window behind (napari's leak check)."""
    from PyQt6.QtWidgets import QApplication

    before = {id(w) for w in QApplication.topLevelWidgets() if w.isVisible()}
    yield
    QApplication.processEvents()
    leaked = [
        w for w in QApplication.topLevelWidgets() if w.isVisible() and id(w) not in before
    ]
    for w in leaked:
        w.close()
    assert not leaked, f"test left windows open: {[type(w).__name__ for w in leaked]}"
