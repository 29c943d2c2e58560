"""Virtual camera output through pyvirtualcam (v4l2loopback, OBS, Unity Capture)."""

from __future__ import annotations

import numpy as np

from backend.errors import OutputError


class VirtualCamera:
    """Sends masked BGR frames to a virtual camera device.

    Raises OutputError with one line when no virtual camera device exists.
    """

    def __init__(self, width: int, height: int, fps: float) -> None:
        try:
            import pyvirtualcam
        except ImportError as exc:  # pragma: no cover - pyvirtualcam is a dependency
            raise OutputError(f"virtual camera: pyvirtualcam is not installed ({exc})") from None
        try:
            self._cam = pyvirtualcam.Camera(
                width=int(width), height=int(height), fps=float(fps),
                fmt=pyvirtualcam.PixelFormat.BGR,
            )
        except Exception as exc:  # noqa: BLE001 - every backend raises its own type
            raise OutputError(f"virtual camera: no device available ({exc})") from None
        self.device: str = str(self._cam.device)
        self.size = (int(width), int(height))

    def send(self, image: np.ndarray) -> None:
        """Send one (H, W, 3) uint8 BGR frame of the size given at construction."""
        self._cam.send(np.ascontiguousarray(image))

    def close(self) -> None:
        """Release the device."""
        self._cam.close()
