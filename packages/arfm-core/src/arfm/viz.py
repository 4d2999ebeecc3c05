"""Pictures of tracks, as in the paper's figures: each track goes from a blue start to red.

- :func:`draw_tracks` draws tracks on one frame (PNG-able array).
- :func:`tracks_animation` makes GIF/MP4 frames: the trails grow step by step, optionally
  side by side with a second set (e.g. prediction | pseudo-labels).
- :func:`write_gif` (GIF, or H.264 MP4 by suffix via :func:`arfm.data.video.write_mp4`) / :func:`write_png` write atomically.

``arfm viz`` draws a labelled clip's tracks or a prediction file (``.npz`` with ``tracks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from arfm.atomic import atomic_path

BLUE = np.array([40, 90, 255], dtype=np.float32)  # RGB
RED = np.array([255, 40, 40], dtype=np.float32)


def step_colour(step: int, num_steps: int) -> tuple[int, int, int]:
    """RGB colour of step ``step`` of ``num_steps``: blue at the start, red at the end."""
    a = 0.0 if num_steps <= 1 else step / (num_steps - 1)
    return tuple(int(v) for v in (1 - a) * BLUE + a * RED)


def draw_tracks(
    frame: np.ndarray,
    tracks: np.ndarray,
    visible: np.ndarray | None = None,
    upto: int | None = None,
    thickness: int = 1,
    scale: int = 2,
    dim_background: float = 0.35,
) -> np.ndarray:
    """Draw tracks on a frame.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        tracks: ``(N, T, 2)`` pixel positions in that frame.
        visible: ``(N, T)`` bool; invisible segments are skipped. None = all visible.
        upto: draw steps ``0 .. upto`` only (for animations); None = all.
        thickness: line width at output scale.
        scale: integer upscaling of the output, so thin trails stay readable.
        dim_background: how much the frame is darkened to make trails stand out.

    Returns:
        ``(H * scale, W * scale, 3)`` uint8 RGB.
    """
    if tracks.ndim != 3 or tracks.shape[-1] != 2:
        raise ValueError(f"tracks must be (N, T, 2), got {tracks.shape}")
    h, w = frame.shape[:2]
    canvas = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    canvas = (canvas * (1 - dim_background)).astype(np.uint8)
    n, steps, _ = tracks.shape
    last = steps - 1 if upto is None else min(upto, steps - 1)
    vis = np.ones((n, steps), dtype=bool) if visible is None else visible.astype(bool)
    pts = np.round(tracks * scale * 16).astype(np.int64)  # 4 fractional bits for cv2's shift
    for t in range(last):
        colour = step_colour(t, steps)
        for i in range(n):
            if vis[i, t] and vis[i, t + 1]:
                cv2.line(canvas, tuple(pts[i, t]), tuple(pts[i, t + 1]), colour, thickness, cv2.LINE_AA, shift=4)
    for i in range(n):
        if vis[i, 0]:
            cv2.circle(canvas, tuple(pts[i, 0]), 2 * scale * 16, tuple(int(v) for v in BLUE), -1, cv2.LINE_AA, shift=4)
    return canvas


def label(image: np.ndarray, text: str) -> np.ndarray:
    """Write a caption in the top-left corner (white on a dark band)."""
    out = image.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def tracks_animation(
    frames: np.ndarray,
    panels: list[tuple[str, np.ndarray, np.ndarray | None]],
    scale: int = 2,
) -> list[np.ndarray]:
    """Animation frames with growing trails, one panel per track set, side by side.

    Args:
        frames: ``(T, H, W, 3)`` uint8; step ``t`` is drawn on ``frames[min(t, T-1)]`` (a single
            conditioning frame is simply repeated).
        panels: ``(title, tracks (N, S, 2), visible (N, S) or None)`` per panel; all ``S`` equal.
    """
    steps = panels[0][1].shape[1]
    out = []
    for t in range(steps):
        frame = frames[min(t, len(frames) - 1)]
        images = [label(draw_tracks(frame, tr, vis, upto=t, scale=scale), f"{title}  t={t}") for title, tr, vis in panels]
        out.append(np.concatenate(images, axis=1))
    return out


ANIMATION_SUFFIXES = (".gif", ".mp4")
PICTURE_SUFFIXES = (".png",)


def check_output_suffix(path: str | Path, allowed: tuple[str, ...], flag: str = "--out") -> None:
    """Raise ``ValueError`` naming ``path`` unless its suffix is one of ``allowed``."""
    if Path(path).suffix.lower() not in allowed:
        raise ValueError(f"{flag} {path}: unsupported suffix {Path(path).suffix or '(none)'!r}; use one of {', '.join(allowed)}")


def write_gif(path: str | Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write an animation atomically: a looping GIF, or an H.264 MP4, chosen by the suffix."""
    import imageio.v3 as iio

    from arfm.data.video import write_mp4

    path = Path(path)
    check_output_suffix(path, ANIMATION_SUFFIXES, flag="animation path")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"animation fps must be a positive number, got {fps}")
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=int(1000 / fps), loop=0)
        else:
            write_mp4(tmp, np.stack(frames), fps)
    return path


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB image atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write image {path}")
    return path


@dataclass
class VizCommand:
    """Draw tracks of a labelled clip or of a prediction file.

    Attributes:
        source: a prediction ``.npz`` (keys ``frames`` (T,H,W,3) uint8 and ``tracks`` (N,S,2) or
            (K,N,S,2); optional ``visible``) or a labelled dataset directory (with --clip).
        out: output picture (.png) or animation (.gif/.mp4).
        clip: clip index in a labelled dataset.
        max_points: most tracks drawn.
    """

    source: Path
    out: Path
    clip: int = 0
    max_points: int = 200

    def __post_init__(self) -> None:
        check_output_suffix(self.out, PICTURE_SUFFIXES + ANIMATION_SUFFIXES)
        if self.max_points < 1:
            raise ValueError(f"--max-points must be >= 1, got {self.max_points}")


def main(argv: list[str] | None = None) -> None:
    import tyro

    cmd = tyro.cli(VizCommand, args=argv, prog="arfm viz")
    if cmd.source.suffix == ".npz":
        data = np.load(cmd.source)
        missing = [key for key in ("frames", "tracks") if key not in data.files]
        if missing:
            raise ValueError(f"prediction file {cmd.source} lacks {missing}: expected the .npz written by `arfm predict`")
        frames, tracks = data["frames"], data["tracks"]
        tracks = tracks[0] if tracks.ndim == 4 else tracks
        visible = data["visible"] if "visible" in data.files else None
    else:
        from arfm.data.dataset import open_labelled_dataset

        dataset = open_labelled_dataset(cmd.source)
        if not -len(dataset) <= cmd.clip < len(dataset):
            raise ValueError(f"--clip {cmd.clip} is out of range: {cmd.source} holds {len(dataset)} clips")
        clip = dataset.load_clip(cmd.clip)
        frames, tracks, visible = clip.frames, clip.tracks, clip.visible
    tracks = tracks[: cmd.max_points]
    visible = None if visible is None else visible[: cmd.max_points]
    if cmd.out.suffix.lower() == ".png":
        write_png(cmd.out, draw_tracks(frames[0], tracks, visible))
    else:
        write_gif(cmd.out, tracks_animation(frames, [("tracks", tracks, visible)]))
    print(f"wrote {cmd.out}")


if __name__ == "__main__":
    from arfm.errors import run_cli

    run_cli(main, "arfm viz")
