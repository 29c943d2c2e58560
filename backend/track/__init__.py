"""Tracking: turns per-frame detections into face tracks with stable ids.

Public names: ``Tracker`` (update / predict / reset / set_exempt / track_at).
"""

from backend.track.tracker import Tracker

__all__ = ["Tracker"]
