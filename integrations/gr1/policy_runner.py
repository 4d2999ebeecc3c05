"""Closed-loop GR-1 control with online track conditioning (ARFM paper §4.4, Table 3).

:class:`GR1Runner` keeps the policy's sliding window of the last ``window`` steps and caches,
per frame, everything that does not change once computed (the frozen ViT features of both
cameras, the track token): each control step encodes only the newest frame, then runs the
causal transformer on the window and reads the action of the newest step.

:class:`OnlineTrackConditioner` asks a track predictor (any entry of the
:mod:`arfm.predictors` registry, built from its spec) for the future tracks of the query points
at every step (streaming predictors such as ARFM update their horizon, §3.4): the current static frame is resized to the predictor's 256 x 256 frame, points
are moved between the camera's and that frame's pixels with :mod:`arfm.coords`, and the
prediction (``track_len - 1`` future steps) is prefixed with the current positions so the
track encoder sees ``track_len`` positions starting now, as in training.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from arfm.coords import MODEL_FRAME_SIZE, rescale_pixels
from arfm.online import GivenPositionsTracker
from arfm.predictors import PredictionRequest, TrackPredictor
from integrations.gr1.modeling_gr1 import GR1Policy

FutureFn = Callable[[int], tuple[np.ndarray, np.ndarray]]
"""``future(horizon) -> (tracks (N, horizon, 2), visible (N, horizon))`` ground truth in camera pixels."""


class OnlineTrackConditioner:
    """Turns the current observation into the ``(N, track_len, 2)`` conditioning tracks.

    A predictor that can stream (``predictor.stream``, e.g. ``arfm:<ckpt>``) keeps its horizon
    up to date with the paper's horizon updates (§3.4): it is reset at the start of every
    subtask and updated at every control step with the points' current positions. Any other
    predictor predicts the horizon afresh at each step. Ground truth is computed only for
    predictors that declare ``requires_ground_truth`` (the ``gt`` oracle). No predictor is
    recognised by its name.

    Args:
        predictor: from :func:`arfm.predictors.build_predictor`.
        track_len: positions per conditioning track (the policy's ``config.track_len``).
        frame_size: side of the static camera image the points live in.
        seed: noise seed of streaming predictors.
    """

    def __init__(self, predictor: TrackPredictor, track_len: int, frame_size: int, seed: int = 0) -> None:
        self.predictor, self.track_len, self.frame_size, self.seed = predictor, track_len, frame_size, seed
        self.needs_ground_truth = bool(getattr(predictor, "requires_ground_truth", False))
        self.streams = hasattr(predictor, "stream")
        self._stream = None
        self._tracker: GivenPositionsTracker | None = None

    def reset(self) -> None:
        """A new subtask starts: a streaming predictor restarts from the next frame."""
        self._stream = None

    def _model_frame(self, frame: np.ndarray) -> torch.Tensor:
        img = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0
        img = F.interpolate(img, size=(MODEL_FRAME_SIZE, MODEL_FRAME_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return img.clamp(0, 1)  # (1, 3, 256, 256)

    def _request(self, frame: torch.Tensor, query: torch.Tensor, visible: np.ndarray, caption: str, future: FutureFn | None) -> PredictionRequest:
        future_tracks = future_visible = None
        if self.needs_ground_truth:
            if future is None:
                raise ValueError(f"track predictor {self.predictor.name!r} needs ground-truth future tracks, which this environment cannot give")
            gt, gt_vis = future(self.track_len - 1)
            future_tracks = rescale_pixels(torch.from_numpy(gt).float(), self.frame_size, MODEL_FRAME_SIZE)
            future_visible = torch.from_numpy(gt_vis).bool()
        return PredictionRequest(
            frames=frame, observed_tracks=query[:, None], observed_visible=torch.from_numpy(visible).bool()[:, None],
            caption=caption, horizon=self.track_len - 1, num_samples=1, future_tracks=future_tracks, future_visible=future_visible,
        )

    def __call__(self, frame: np.ndarray, points: np.ndarray, visible: np.ndarray, caption: str, future: FutureFn | None = None) -> torch.Tensor | None:
        """Conditioning tracks ``(N, track_len, 2)`` in camera pixels, or ``None`` (no tracks).

        Args:
            frame: ``(H, W, 3)`` uint8 static camera image.
            points: ``(N, 2)`` current pixel positions of the query points.
            visible: ``(N,)`` bool.
            caption: the current language instruction.
            future: ground-truth look-ahead, when the environment can provide it.
        """
        img = self._model_frame(frame)
        query = rescale_pixels(torch.from_numpy(points).float(), self.frame_size, MODEL_FRAME_SIZE)  # (N, 2)
        if self.streams:
            image = (img[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            if self._stream is None:
                self._tracker = GivenPositionsTracker()
                self._stream = self.predictor.stream(self.track_len - 1, tracker=self._tracker, seed=self.seed)
                horizon = self._stream.reset(image, query.numpy(), caption)
            else:
                self._tracker.set(query.numpy())
                horizon = self._stream.update(image)
            return self._finish(points, torch.from_numpy(horizon)[None])
        return self._finish(points, self.predictor.predict(self._request(img, query, visible, caption, future)))

    def _finish(self, points: np.ndarray, predicted: torch.Tensor | None) -> torch.Tensor | None:
        if predicted is None:
            return None
        if predicted.ndim != 4 or predicted.shape[1:] != (points.shape[0], self.track_len - 1, 2):
            raise ValueError(f"predictor {self.predictor.name!r} returned {tuple(predicted.shape)}, expected (S, {points.shape[0]}, {self.track_len - 1}, 2)")
        future = rescale_pixels(predicted[0].float(), MODEL_FRAME_SIZE, self.frame_size)  # (N, H, 2) camera pixels
        return torch.cat([torch.from_numpy(points).float()[:, None], future], dim=1)


class GR1Runner:
    """Sliding-window GR-1 controller with per-frame feature caching.

    Args:
        policy: a trained :class:`GR1Policy` (put in eval mode here).
        device: where to run it.
    """

    def __init__(self, policy: GR1Policy, device: str | torch.device = "cpu") -> None:
        self.policy = policy.eval().to(device)
        self.device = torch.device(device)
        self._text_cache: dict[str, torch.Tensor] = {}
        self.reset("")

    def reset(self, instruction: str) -> None:
        """Start a new subtask: empty window, new instruction (as CALVIN's ``model.reset()``)."""
        w = self.policy.config.window
        self.instruction = instruction
        self.static: deque[torch.Tensor] = deque(maxlen=w)
        self.gripper: deque[torch.Tensor] = deque(maxlen=w)
        self.robot: deque[torch.Tensor] = deque(maxlen=w)
        self.tracks: deque[torch.Tensor] = deque(maxlen=w)
        self.frames_encoded = 0

    def _text(self) -> torch.Tensor:
        if self.instruction not in self._text_cache:
            self._text_cache[self.instruction] = self.policy.encode_text([self.instruction])
        return self._text_cache[self.instruction]

    @torch.no_grad()
    def act(self, obs: dict, tracks: torch.Tensor | None) -> np.ndarray:
        """Action for the newest observation.

        Args:
            obs: CALVIN observation (``rgb_obs.rgb_static``, ``rgb_obs.rgb_gripper``, ``robot_obs``).
            tracks: ``(N, track_len, 2)`` camera-pixel conditioning tracks, or ``None``.

        Returns:
            ``(7,)`` CALVIN relative action: arm deltas clipped to [-1, 1], gripper +1 / -1.
        """
        p, c = self.policy, self.policy.config
        rgb = obs["rgb_obs"]
        to_chw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(self.device)  # noqa: E731
        self.static.append(p.encode_images(to_chw(rgb["rgb_static"]))[0])  # (1 + P, Dv), cached for the window
        self.gripper.append(p.encode_images(to_chw(rgb["rgb_gripper"]))[0])
        self.robot.append(torch.as_tensor(np.asarray(obs["robot_obs"]), dtype=torch.float32, device=self.device))
        self.frames_encoded += 1
        if c.use_tracks:
            t = None if tracks is None else tracks.to(self.device)[None, None]
            self.tracks.append(p.encode_tracks(t, batch_shape=(1, 1))[0, 0])
        track_tokens = torch.stack(list(self.tracks))[None] if c.use_tracks else None
        out = p(torch.stack(list(self.static))[None], torch.stack(list(self.gripper))[None], self._text(),
                torch.stack(list(self.robot))[None], track_tokens)
        arm = out.arm[0, -1].clamp(-1, 1).cpu().numpy()
        gripper = 1.0 if out.gripper_logit[0, -1].item() > 0 else -1.0
        return np.concatenate([arm, [gripper]]).astype(np.float64)
