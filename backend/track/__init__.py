"""Tracking: turns per-frame detections into face tracks with stable ids.

Public names: ``Tracker`` (update / predict / reset / set_exempt / track_at),
``SecondPass`` (files only: completes each track backward through a window of buffered
frames, re-detecting in crops, and interpolates across its gaps), and ``MotionEstimator``
(the picture's own motion between frames, which carries every track).
"""

from backend.track.camera import MotionEstimator, chain
from backend.track.second_pass import Added, SecondPass
from backend.track.tracker import Tracker

__all__ = ["Added", "MotionEstimator", "SecondPass", "Tracker", "chain"]
