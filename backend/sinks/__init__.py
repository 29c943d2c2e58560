"""Frame sinks: the H.264 recorder (audio kept, atomic), image files, the virtual camera."""

from backend.sinks.checks import output_writable
from backend.sinks.images import ImageSink
from backend.sinks.recorder import (
    VideoRecorder,
    batch_encoder_threads,
    container_format,
    h264_pix_fmt,
)
from backend.sinks.virtual_camera import VirtualCamera

__all__ = [
    "ImageSink",
    "VideoRecorder",
    "VirtualCamera",
    "batch_encoder_threads",
    "container_format",
    "h264_pix_fmt",
    "output_writable",
]
