"""Checks on output paths, made before any work starts so failures come early and clear."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from backend.errors import OutputError


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def output_writable(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    folder: bool = False,
) -> None:
    """Raise OutputError (one line naming ``path``) unless ``path`` can be written.

    File outputs (default): the parent folder must exist and accept a new file (tested by
    creating and removing a temporary file there, so read-only mounts and ACLs count, and
    root is not fooled by permission bits), ``path`` must not be a folder, and it must not
    be any of ``inputs`` (overwriting the input would destroy it). ``folder=True`` checks
    an output folder instead: it may not exist yet (its parent must), or it must be a
    writable folder. Nothing is left behind.
    """
    p = Path(path)
    for src in inputs:
        if src is not None and _same_file(p, Path(src)):
            raise OutputError(f"{p}: output is the same file as the input")
    if folder:
        if p.exists() and not p.is_dir():
            raise OutputError(f"{p}: exists and is not a folder")
        target = p if p.is_dir() else p.parent
    else:
        if p.is_dir():
            raise OutputError(f"{p}: is a folder, expected a file name")
        target = p.parent
    target = target if str(target) else Path(".")
    if not target.exists():
        raise OutputError(f"{p}: folder {target} does not exist")
    if not target.is_dir():
        raise OutputError(f"{p}: {target} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ptim-probe-", dir=target)
    except OSError as exc:
        why = "read-only or permission denied" if isinstance(exc, PermissionError) else (
            exc.strerror or str(exc))
        raise OutputError(f"{p}: folder {target} is not writable ({why})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.remove(probe)
