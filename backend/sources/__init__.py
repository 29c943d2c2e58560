"""Frame sources: video files, image files and folders, cameras and synthetic scenes.

Use ``open_source(spec)`` to turn a user's input into a ``Source``; see ``Source`` for
the contract every source keeps.
"""

from backend.sources.base import MAX_SIDE, Source, SourceReadError
from backend.sources.camera import CameraInfo, CameraSource, list_cameras
from backend.sources.face_photo import ASTRONAUT_FACE_BOX, astronaut
from backend.sources.factory import open_source
from backend.sources.images import (
    IMAGE_EXTENSIONS,
    ImageFileSource,
    ImageFolderSource,
    is_image_path,
    read_image,
    to_bgr8,
)
from backend.sources.synthetic import (
    SCENES,
    DemoSource,
    FacePath,
    SceneSpec,
    Wave,
    ground_truth,
    render,
    write_clip,
)
from backend.sources.video_file import VideoFileSource

__all__ = [
    "ASTRONAUT_FACE_BOX",
    "IMAGE_EXTENSIONS",
    "MAX_SIDE",
    "SCENES",
    "CameraInfo",
    "CameraSource",
    "DemoSource",
    "FacePath",
    "ImageFileSource",
    "ImageFolderSource",
    "SceneSpec",
    "Source",
    "SourceReadError",
    "VideoFileSource",
    "Wave",
    "astronaut",
    "ground_truth",
    "is_image_path",
    "list_cameras",
    "open_source",
    "read_image",
    "render",
    "to_bgr8",
    "write_clip",
]
