"""Clips for the segment and cluster tests: B-frames, keyframes each second, a timestamp gap."""

from __future__ import annotations

import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av


def gap_clip(path: Path, n_frames: int = 90, size: tuple[int, int] = (320, 180),
             gap_after: int | None = 29, gap_ticks: int = 6, audio: bool = True) -> list[int]:
    """Write the demo scene as H.264 (B-frames, a keyframe every 30 frames, no scene cuts)
    at 30 fps in a 1/30 time base, with ``gap_ticks`` missing frames after frame
    ``gap_after`` (variable frame rate), and a 48 kHz AAC tone; returns every frame's pts."""
    from backend.sinks.recorder import add_h264_stream, to_video_frame
    from backend.sources import SCENES, render
    from backend.sources.synthetic import _mux_tone

    spec = replace(SCENES["demo"].resized(*size), n_frames=n_frames)
    tb = Fraction(1, 30)
    pts = [i + (gap_ticks if gap_after is not None and i > gap_after else 0)
           for i in range(n_frames)]
    rate = 48000
    with av.open(os.fspath(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = add_h264_stream(out, spec.width, spec.height, Fraction(30), tb, crf=18)
        video.codec_context.options = {**video.codec_context.options,
                                       "x264-params": "keyint=30:min-keyint=30:scenecut=0"}
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=rate, layout="mono")
            sound.time_base = Fraction(1, rate)
        done = 0
        for i in range(n_frames):
            vf = to_video_frame(render(spec, i)[0], video)
            vf.pts, vf.time_base = pts[i], tb
            out.mux(video.encode(vf))
            if sound is not None:
                done = _mux_tone(out, sound, done, round((pts[i] + 1) / 30 * rate), rate)
        out.mux(video.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return pts


def scene(n_frames: int = 90, size: tuple[int, int] = (320, 180)):
    """The scene ``gap_clip`` renders (frame i is ``render(scene, i)``)."""
    from backend.sources import SCENES

    return replace(SCENES["demo"].resized(*size), n_frames=n_frames)
