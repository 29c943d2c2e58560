"""Frame sinks: the H.264 recorder (audio kept, atomic) and image files."""

from backend.sinks.checks import output_writable
from backend.sinks.images import ImageSink
from backend.sinks.recorder import VideoRecorder, container_format, h264_pix_fmt

__all__ = ["ImageSink", "VideoRecorder", "container_format", "h264_pix_fmt", "output_writable"]
