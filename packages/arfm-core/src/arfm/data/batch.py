"""What the model trains on: one window of a clip, and a padded batch of them (paper §3.1).

Every data source (the moving-shapes generator, labelled video datasets, CALVIN
imports) yields :class:`TrackWindow` objects; :func:`collate_windows` pads them into a
:class:`TrackBatch`, the only thing the model's ``loss`` and ``sample`` consume.

Units follow :mod:`arfm.coords`: pixels of the 256 x 256 model frame, ``(x, y)`` order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TrackWindow:
    """One training/evaluation window.

    Attributes:
        frames: ``(F, 3, H, W)`` float32 in ``[0, 1]``: the conditioning frames
            (``F == num_cond_frames``; the model never sees later frames).
        tracks: ``(N, L + 1, 2)`` float32 pixel positions ``p_0 .. p_L``; frame ``l`` of the
            window is ``frames[l]`` for ``l < F``.
        visible: ``(N, L + 1)`` bool.
        caption: free text (may be empty).
        meta: anything else worth keeping (clip id, fps, start frame...).
    """

    frames: torch.Tensor
    tracks: torch.Tensor
    visible: torch.Tensor
    caption: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[1] != 3:
            raise ValueError(f"TrackWindow.frames must be (F, 3, H, W), got {tuple(self.frames.shape)}")
        if self.frames.shape[0] < 1:
            raise ValueError("TrackWindow.frames needs at least one conditioning frame")
        if self.tracks.ndim != 3 or self.tracks.shape[-1] != 2:
            raise ValueError(f"TrackWindow.tracks must be (N, L+1, 2), got {tuple(self.tracks.shape)}")
        if self.tracks.shape[0] == 0:
            raise ValueError("TrackWindow.tracks has zero points: a window needs at least one track")
        if self.visible.shape != self.tracks.shape[:2]:
            raise ValueError(
                f"TrackWindow.visible must be {tuple(self.tracks.shape[:2])} to match tracks, got {tuple(self.visible.shape)}"
            )
        if self.tracks.shape[1] <= self.frames.shape[0]:
            raise ValueError(
                f"TrackWindow has {self.frames.shape[0]} conditioning frames but only {self.tracks.shape[1]} track steps: "
                "there must be at least one future step to predict"
            )
        if not torch.isfinite(self.tracks).all():
            raise ValueError("TrackWindow.tracks contains NaN or Inf")

    @property
    def num_cond_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class TrackBatch:
    """A padded batch of windows (``B`` windows, up to ``N`` points, ``L + 1`` steps).

    Attributes:
        frames: ``(B, F, 3, H, W)``; windows with fewer conditioning frames repeat their last one.
        num_cond_frames: ``(B,)`` long, each in ``[1, L]``.
        tracks: ``(B, N, L + 1, 2)`` pixels.
        visible: ``(B, N, L + 1)`` bool (False on padded points).
        point_mask: ``(B, N)`` bool, True for real points.
        captions: ``B`` strings.
    """

    frames: torch.Tensor
    num_cond_frames: torch.Tensor
    tracks: torch.Tensor
    visible: torch.Tensor
    point_mask: torch.Tensor
    captions: list[str]

    def to(self, device: torch.device | str) -> "TrackBatch":
        return TrackBatch(
            frames=self.frames.to(device),
            num_cond_frames=self.num_cond_frames.to(device),
            tracks=self.tracks.to(device),
            visible=self.visible.to(device),
            point_mask=self.point_mask.to(device),
            captions=list(self.captions),
        )

    @property
    def batch_size(self) -> int:
        return int(self.tracks.shape[0])


def collate_windows(windows: list[TrackWindow]) -> TrackBatch:
    """Pad windows to a batch. All windows must share ``L`` and the frame size."""
    if not windows:
        raise ValueError("collate_windows got an empty list of windows")
    steps = {w.tracks.shape[1] for w in windows}
    if len(steps) != 1:
        raise ValueError(f"windows in one batch must have the same number of track steps, got {sorted(steps)}")
    sizes = {tuple(w.frames.shape[-2:]) for w in windows}
    if len(sizes) != 1:
        raise ValueError(f"windows in one batch must share the frame size, got {sorted(sizes)}")
    num_steps = steps.pop()
    height, width = sizes.pop()
    max_points = max(w.tracks.shape[0] for w in windows)
    max_frames = max(w.frames.shape[0] for w in windows)
    batch = len(windows)

    frames = torch.zeros(batch, max_frames, 3, height, width)
    tracks = torch.zeros(batch, max_points, num_steps, 2)
    visible = torch.zeros(batch, max_points, num_steps, dtype=torch.bool)
    point_mask = torch.zeros(batch, max_points, dtype=torch.bool)
    for i, w in enumerate(windows):
        f, n = w.frames.shape[0], w.tracks.shape[0]
        frames[i, :f] = w.frames
        frames[i, f:] = w.frames[-1]  # repeat the last observed frame; never attended as "observed"
        tracks[i, :n] = w.tracks
        tracks[i, n:] = w.tracks[:1, :1]  # park padded points on a real position: keeps features finite
        visible[i, :n] = w.visible
        point_mask[i, :n] = True
    num_cond = torch.tensor([w.num_cond_frames for w in windows], dtype=torch.long)
    return TrackBatch(frames, num_cond, tracks, visible, point_mask, [w.caption for w in windows])
