"""Face replacement: hide an identity behind another face (DFM, inswapper, photo).

Public names: ``FaceReplacer`` (per stream: ``replace(image, tracks) -> [bool]``),
``load_source`` (load and check a model or photo once), ``validate`` (check the settings'
source before any frame is read), ``ReplaceError`` (one-line refusal, exit 2),
``COUNTS`` (faces replaced / fallen back, process-wide) and the ``disclosure`` module
(label, metadata tag, consent reminder).
"""

from backend.replace import disclosure
from backend.replace.engine import COUNTS, FaceReplacer
from backend.replace.formats import FaceSource, ReplaceError, demo_photo, load_source
from config.schema import MaskSettings


def validate(settings: MaskSettings) -> FaceSource:
    """Load and check the replacement source the settings name (cached for the run).

    Raises ReplaceError (exit 2) for a missing, wrong, truncated, failing, NaN or constant
    model, or a photo without a usable face.
    """
    return FaceReplacer(settings).source


def prepare_run(settings) -> None:
    """Before any frame of a run: set the label policy and check the replacement source.

    ``settings`` is the full ``config.schema.Settings``. With mask type replace, states the
    consent reminder (debug level: ``process --verbose`` prints it) and, when the label is
    off, says so once; raises ReplaceError (exit 2) for a refused model or photo.
    """
    import logging

    replacing = settings.mask.type == "replace"
    disclosure.note_replacing(replacing)  # files opened from now on carry the tag
    disclosure.set_label(settings.output.disclosure_label, say=replacing)
    if replacing:
        logging.getLogger("ptim.replace").debug("%s", disclosure.CONSENT_REMINDER)
        validate(settings.mask)


__all__ = [
    "COUNTS",
    "FaceReplacer",
    "FaceSource",
    "ReplaceError",
    "demo_photo",
    "disclosure",
    "load_source",
    "prepare_run",
    "validate",
]
