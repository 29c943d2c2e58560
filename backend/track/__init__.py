"""Tracking: turns per-frame detections into face tracks with stable ids.

Public names: ``Tracker`` (update / predict / reset / set_exempt / track_at) and
``LookBack`` (files only: masks a newly confirmed face in the frames before it).
"""

from backend.track.lookback import LookBack
from backend.track.tracker import Tracker

__all__ = ["LookBack", "Tracker"]
