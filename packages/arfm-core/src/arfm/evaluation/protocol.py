"""The evaluation protocol of paper §4.2: run predictors over evaluation windows and score them.

Each window holds the conditioning frame(s) and ``F + horizon`` pseudo-label positions. Every
predictor sees the same :class:`~arfm.predictors.PredictionRequest` (frames, the observed tracks,
the caption, the horizon); the ground-truth future is attached only so the ``gt`` oracle can read
it. Every future step ``1 .. horizon`` is scored (the official code drops the first two; we do not),
and the per-step counts of scored points are kept in the result.

Stochastic predictors are drawn ``max(paper_samples, max(k_values))`` times per clip: the first
``paper_samples`` give the paper's numbers, all of them the best-of-K curves and the energy score.
Deterministic predictors are asked once. The torch RNG is seeded per clip and predictor so a run
is reproducible and does not depend on which other predictors are evaluated alongside.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from arfm.data.batch import TrackWindow
from arfm.evaluation.metrics import DELTA_THRESHOLDS, K_VALUES, PAPER_SAMPLES, ClipScores, aggregate_scores, score_clip
from arfm.predictors import PredictionRequest, TrackPredictor


@dataclass
class ClipRequest(PredictionRequest):
    """A :class:`PredictionRequest` that also names its clip (read by ``frames-to-tracks``)."""

    clip_id: str = ""


@dataclass
class EvalProtocol:
    """What is predicted and how it is scored (defaults: paper §4.2).

    Attributes:
        horizon: future steps predicted and scored (paper: 50).
        paper_samples: samples per clip behind the paper's ``δ`` (best) and ADE (mean) numbers.
        thresholds: pixel thresholds of ``<δ^x``.
        k_values: K of the best-of-K curves (stochastic predictors are drawn ``max(K)`` times).
        seed: base seed of the per-clip torch RNG.
        num_qualitative: clips whose predictions are kept for the qualitative grid.
    """

    horizon: int = 50
    paper_samples: int = PAPER_SAMPLES
    thresholds: tuple[int, ...] = DELTA_THRESHOLDS
    k_values: tuple[int, ...] = K_VALUES
    seed: int = 0
    num_qualitative: int = 4

    def __post_init__(self) -> None:
        self.thresholds = tuple(int(x) for x in self.thresholds)
        self.k_values = tuple(int(k) for k in self.k_values)
        if self.horizon < 1:
            raise ValueError(f"invalid EvalProtocol field 'horizon': must be >= 1, got {self.horizon}")
        if self.paper_samples < 1:
            raise ValueError(f"invalid EvalProtocol field 'paper_samples': must be >= 1, got {self.paper_samples}")
        if not self.thresholds or min(self.thresholds) <= 0:
            raise ValueError(f"invalid EvalProtocol field 'thresholds': need positive pixel values, got {self.thresholds}")
        if not self.k_values or min(self.k_values) < 1:
            raise ValueError(f"invalid EvalProtocol field 'k_values': need values >= 1, got {self.k_values}")
        if self.num_qualitative < 0:
            raise ValueError(f"invalid EvalProtocol field 'num_qualitative': must be >= 0, got {self.num_qualitative}")

    @property
    def stochastic_samples(self) -> int:
        """Draws asked from a stochastic predictor per clip."""
        return max(self.paper_samples, max(self.k_values))


@dataclass
class PredictorResult:
    """One predictor's per-clip scores.

    Attributes:
        spec: the registry spec it was built from (``"arfm:runs/x/checkpoint"``).
        name: the predictor's own name.
        stochastic: whether it was sampled several times.
        num_samples: draws per clip.
        clips: ``{clip_id: ClipScores}`` in evaluation order.
        seconds: wall time spent inside ``predict``.
    """

    spec: str
    name: str
    stochastic: bool
    num_samples: int
    clips: dict[str, ClipScores] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict:
        """Means over clips (see :func:`arfm.evaluation.metrics.aggregate_scores`)."""
        return aggregate_scores(list(self.clips.values()))


@dataclass
class QualitativeClip:
    """What the qualitative grid draws for one clip.

    Attributes:
        clip_id: clip name.
        frame: ``(H, W, 3)`` uint8, the last conditioning frame.
        target: ``(N, H_f, 2)`` pseudo-label future positions (pixels).
        visible: ``(N, H_f)`` bool.
        start: ``(N, 2)`` last observed positions.
        predictions: ``{spec: (N, H_f, 2)}`` the sample the ``δ`` metrics used.
    """

    clip_id: str
    frame: np.ndarray
    target: np.ndarray
    visible: np.ndarray
    start: np.ndarray
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Everything one evaluation run produced.

    Attributes:
        protocol: the protocol used.
        predictors: one result per predictor, in the order given.
        clip_ids: clips scored, in order.
        skipped: ``{clip_id: reason}`` for every clip left out: those no predictor could be scored
            on and those the window reader dropped (too short, too little movement, bad data).
        qualitative: clips kept for the qualitative grid.
        frame_size: ``(width, height)`` of the frames the pixels refer to.
    """

    protocol: EvalProtocol
    predictors: list[PredictorResult]
    clip_ids: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    qualitative: list[QualitativeClip] = field(default_factory=list)
    frame_size: tuple[int, int] | None = None


def request_from_window(window: TrackWindow, horizon: int, num_samples: int, clip_id: str = "") -> ClipRequest:
    """Build the request a predictor sees from an evaluation window.

    Args:
        window: ``F`` conditioning frames and at least ``F + horizon`` track positions.
        horizon: future steps to predict.
        num_samples: draws wanted.
        clip_id: the clip's name.
    """
    cond = window.num_cond_frames
    available = window.tracks.shape[1] - cond
    if available < horizon:
        raise ValueError(f"clip {clip_id!r}: window has {available} future steps after {cond} conditioning frame(s), {horizon} are scored")
    return ClipRequest(
        frames=window.frames.float(),
        observed_tracks=window.tracks[:, :cond].float(),
        observed_visible=window.visible[:, :cond],
        caption=window.caption,
        horizon=horizon,
        num_samples=num_samples,
        future_tracks=window.tracks[:, cond : cond + horizon].float(),
        future_visible=window.visible[:, cond : cond + horizon],
        clip_id=clip_id,
    )


def _draws(predictor: TrackPredictor, protocol: EvalProtocol) -> int:
    """Samples asked per clip: 1 if deterministic, else the protocol's, capped by ``max_samples``
    when the predictor has a finite supply (e.g. a few generated videos per clip)."""
    if not predictor.stochastic:
        return 1
    supply = getattr(predictor, "max_samples", None)
    return min(protocol.stochastic_samples, int(supply)) if supply else protocol.stochastic_samples


def _predict(predictor: TrackPredictor, spec: str, request: ClipRequest) -> np.ndarray:
    """Run one predictor and check its output: ``(S, N, H, 2)`` finite pixels."""
    output = predictor.predict(request)
    if output is None:
        raise ValueError(f"predictor {spec!r} gives no tracks (like 'none'): it cannot be scored")
    expected = (request.num_samples, request.observed_tracks.shape[0], request.horizon, 2)
    if tuple(output.shape) != expected:
        raise ValueError(f"predictor {spec!r} returned shape {tuple(output.shape)} on clip {request.clip_id!r}, expected {expected}")
    array = output.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(array).all():
        raise ValueError(f"predictor {spec!r} returned NaN or Inf on clip {request.clip_id!r}")
    return array


def evaluate(
    predictors: Mapping[str, TrackPredictor],
    windows: Iterable[tuple[str, TrackWindow]],
    protocol: EvalProtocol | None = None,
    total: int | None = None,
    dropped: Mapping[str, str] | None = None,
) -> EvalResult:
    """Run every predictor on every window and score it.

    Windows are read once (clips outer, predictors inner), so a lazily loaded dataset is decoded
    a single time. A clip whose future has no visible point is skipped for all predictors and
    listed in ``EvalResult.skipped``; a predictor that fails on a clip stops the run (tables must
    compare predictors on the same clips).

    Args:
        predictors: ``{spec: predictor}``, in table order.
        windows: ``(clip_id, TrackWindow)`` pairs, e.g. from ``arfm.data.dataset.eval_windows``.
        protocol: horizon, samples and thresholds; the paper's by default.
        total: number of windows, for the progress bar, when known.
        dropped: ``{clip_id: reason}`` of clips the window reader left out (e.g. the ``dropped``
            dict that :func:`arfm.data.dataset.eval_windows` fills while ``windows`` is read);
            read after the last window and added to ``EvalResult.skipped``.
    """
    protocol = protocol or EvalProtocol()
    if not predictors:
        raise ValueError("evaluate got no predictors")
    results = [
        PredictorResult(
            spec=spec,
            name=getattr(p, "name", spec),
            stochastic=bool(p.stochastic),
            num_samples=_draws(p, protocol),
        )
        for spec, p in predictors.items()
    ]
    result = EvalResult(protocol=protocol, predictors=results)
    for index, (clip_id, window) in enumerate(tqdm(windows, total=total, desc="eval clips", unit="clip")):
        if clip_id in result.skipped or any(clip_id in r.clips for r in results):
            raise ValueError(f"clip id {clip_id!r} appears twice in the evaluation windows")
        base = request_from_window(window, protocol.horizon, 1, clip_id)
        target = base.future_tracks.double().numpy()
        visible = base.future_visible.numpy().astype(bool)
        if not visible.any():
            result.skipped[clip_id] = "no visible target point in any future step"
            continue
        result.frame_size = (int(window.frames.shape[-1]), int(window.frames.shape[-2]))
        keep = len(result.qualitative) < protocol.num_qualitative
        if keep:
            frame = (window.frames[-1].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            qualitative = QualitativeClip(clip_id, frame, target, visible, base.observed_tracks[:, -1].double().numpy())
        for predictor_result, (spec, predictor) in zip(results, predictors.items()):
            request = request_from_window(window, protocol.horizon, predictor_result.num_samples, clip_id)
            torch.manual_seed(protocol.seed * 1_000_003 + index)
            started = time.perf_counter()
            samples = _predict(predictor, spec, request)
            predictor_result.seconds += time.perf_counter() - started
            scores = score_clip(samples, target, visible, protocol.paper_samples, protocol.thresholds, protocol.k_values)
            predictor_result.clips[clip_id] = scores
            if keep:
                qualitative.predictions[spec] = samples[scores.best_sample]
        if keep:
            result.qualitative.append(qualitative)
        result.clip_ids.append(clip_id)
    for clip_id, reason in (dropped or {}).items():
        result.skipped.setdefault(clip_id, reason)
    if not result.clip_ids:
        listing = "; ".join(f"{k}: {v}" for k, v in result.skipped.items()) or "no windows given"
        raise ValueError(f"no clip could be scored: {len(result.skipped)} skipped ({listing})")
    return result
