"""The evaluation's predictors: ARFM / regression checkpoints, Chronos baselines, frames-to-tracks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from arfm.data.batch import TrackWindow
from arfm.evaluation.protocol import request_from_window
from arfm.predictors import PredictionRequest, build_predictor
from arfm.predictors.chronos import ChronosPredictor, load_chronos_pipeline
from arfm.predictors.frames_to_tracks import FramesToTracksPredictor

HORIZON = 6


def _window(frames: torch.Tensor | None = None) -> TrackWindow:
    start = torch.tensor([[60.0, 80.0], [128.0, 128.0], [190.0, 150.0]])
    tracks = start[:, None, :] + torch.arange(HORIZON + 1.0)[None, :, None] * torch.tensor([2.0, 0.0])
    frames = torch.rand(1, 3, 256, 256) if frames is None else frames
    return TrackWindow(frames=frames, tracks=tracks, visible=torch.ones(3, HORIZON + 1, dtype=torch.bool), caption="slide")


# ---------------------------------------------------------------- arfm: / regression:
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from arfm.checkpoint import save_checkpoint
    from arfm.config import tiny_model_config
    from arfm.model import TrackShiftFlowPredictor

    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    return {
        "flow": save_checkpoint(root / "flow", TrackShiftFlowPredictor(tiny_model_config())),
        "regression": save_checkpoint(root / "regression", TrackShiftFlowPredictor(tiny_model_config(objective="regression"))),
    }


def test_arfm_predictor_samples_distinct_reproducible_tracks(checkpoints: dict[str, Path]) -> None:
    predictor = build_predictor(f"arfm:{checkpoints['flow']}")
    assert predictor.stochastic and predictor.name == "arfm"
    request = request_from_window(_window(), HORIZON, 3, "clip")
    torch.manual_seed(1)
    first = predictor.predict(request)
    torch.manual_seed(1)
    again = predictor.predict(request)
    assert first.shape == (3, 3, HORIZON, 2) and torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.allclose(first[0], first[1])  # independent draws


def test_arfm_parallel_spec_streams_with_the_parallel_schedule(checkpoints: dict[str, Path]) -> None:
    from arfm.online import GivenPositionsTracker

    sequential = build_predictor(f"arfm:{checkpoints['flow']}").stream(4, tracker=GivenPositionsTracker())
    parallel = build_predictor(f"arfm-parallel:{checkpoints['flow']}")
    assert parallel.name == "arfm-parallel" and parallel.stochastic
    assert (sequential.schedule, parallel.stream(4, tracker=GivenPositionsTracker()).schedule) == ("sequential", "parallel")


def test_regression_predictor_is_deterministic_and_repeats_one_rollout(checkpoints: dict[str, Path]) -> None:
    predictor = build_predictor(f"regression:{checkpoints['regression']}")
    assert not predictor.stochastic and predictor.name == "regression"
    future = predictor.predict(request_from_window(_window(), HORIZON, 4, "clip"))
    assert future.shape == (4, 3, HORIZON, 2)
    assert torch.equal(future[0], future[3])


def test_checkpoint_objective_must_match_the_spec(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="objective 'flow', not 'regression'.*'arfm:"):
        build_predictor(f"regression:{checkpoints['flow']}")
    with pytest.raises(ValueError, match="objective 'regression', not 'flow'.*'regression:"):
        build_predictor(f"arfm:{checkpoints['regression']}")


def test_checkpoint_predictor_errors_name_the_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_predictor(f"arfm:{tmp_path / 'nowhere'}")
    with pytest.raises(ValueError, match="needs a checkpoint directory"):
        build_predictor("regression")


# ---------------------------------------------------------------- chronos-*
def _save_tiny_chronos(folder: Path) -> Path:
    """A randomly initialised two-layer T5 Chronos model (the real config format, tiny sizes)."""
    from transformers import T5Config, T5ForConditionalGeneration

    vocab = 64
    config = T5Config(
        vocab_size=vocab, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    config.chronos_config = {
        "tokenizer_class": "MeanScaleUniformBins", "tokenizer_kwargs": {"low_limit": -15.0, "high_limit": 15.0},
        "context_length": 64, "prediction_length": 8, "n_tokens": vocab, "n_special_tokens": 2,
        "pad_token_id": 0, "eos_token_id": 1, "use_eos_token": True, "model_type": "seq2seq",
        "num_samples": 4, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
    }
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


def test_chronos_errors_name_the_missing_directory_and_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="absent-chronos.*does not exist"):
        build_predictor(f"chronos-relative:{tmp_path / 'absent-chronos'}")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_chronos_pipeline(tmp_path)
    with pytest.raises(ValueError, match="needs a local Chronos model directory"):
        build_predictor("chronos-absolute")
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "chronos", None)  # as if chronos-forecasting were not installed
    with pytest.raises(ImportError, match="chronos-forecasting"):
        load_chronos_pipeline(tmp_path)


def test_tiny_chronos_runs_both_formulations(tmp_path: Path) -> None:
    pytest.importorskip("chronos", reason="chronos-forecasting not installed (pip install 'arfm-core[chronos]')")
    model_dir = _save_tiny_chronos(tmp_path / "tiny-chronos")
    request = request_from_window(_window(), HORIZON, 5, "clip")
    for spec in ("chronos-absolute", "chronos-relative"):
        predictor = build_predictor(f"{spec}:{model_dir}")
        assert predictor.stochastic and predictor.name == spec
        torch.manual_seed(0)
        future = predictor.predict(request)
        assert future.shape == (5, 3, HORIZON, 2) and torch.isfinite(future).all()
        assert not torch.allclose(future[0], future[1])  # Chronos sample paths differ


class _FixedPipeline:
    """Stands in for a Chronos pipeline: every series is forecast as ``value`` at every step."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.contexts: list[torch.Tensor] = []

    def predict(self, context: torch.Tensor, prediction_length: int, num_samples: int) -> torch.Tensor:
        self.contexts.append(context.clone())
        return torch.full((context.shape[0], num_samples, prediction_length), self.value)


def test_chronos_formulations_build_contexts_and_tracks_as_documented() -> None:
    observed = torch.tensor([[[10.0, 20.0], [13.0, 24.0]]])  # one point seen on two frames
    request = PredictionRequest(
        frames=torch.zeros(2, 3, 8, 8), observed_tracks=observed, observed_visible=torch.ones(1, 2, dtype=torch.bool), horizon=3, num_samples=2
    )
    for formulation, expected_context, expected_x, expected_y in (
        ("absolute", [[10.0, 13.0], [20.0, 24.0]], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
        ("relative", [[0.0, 3.0], [0.0, 4.0]], [14.0, 15.0, 16.0], [25.0, 26.0, 27.0]),
    ):
        predictor = ChronosPredictor.__new__(ChronosPredictor)  # skip loading: only the formulation is tested
        predictor.pipeline, predictor.formulation, predictor.stochastic = _FixedPipeline(1.0), formulation, True
        future = predictor.predict(request)
        assert predictor.pipeline.contexts[0].tolist() == expected_context  # x series, then y series
        assert future.shape == (2, 1, 3, 2)
        assert future[0, 0, :, 0].tolist() == expected_x and future[1, 0, :, 1].tolist() == expected_y


# ---------------------------------------------------------------- frames-to-tracks
def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (256, 256)).astype(np.float32), (0, 0), 2.0)
    noise = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.repeat(noise[:, :, None], 3, axis=2)


def _write_frames(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), frame[:, :, ::-1])


def _sliding(texture: np.ndarray, count: int, speed: float, offset: int = 0) -> list[np.ndarray]:
    """Frames of ``texture`` moved right by ``speed`` px per frame (frame 0 moved by ``offset``)."""
    return [cv2.warpAffine(texture, np.float32([[1, 0, (offset + i) * speed], [0, 1, 0]]), (256, 256), borderMode=cv2.BORDER_REFLECT) for i in range(count)]


def test_frames_to_tracks_recovers_the_generated_motion(tmp_path: Path) -> None:
    texture = _texture()
    _write_frames(tmp_path / "gen" / "clip1", _sliding(texture, HORIZON + 1, 2.0))
    cond = torch.from_numpy(texture).permute(2, 0, 1)[None].float() / 255
    predictor = build_predictor(f"frames-to-tracks:{tmp_path / 'gen'}")
    assert not predictor.stochastic
    request = request_from_window(_window(cond), HORIZON, 2, "clip1")
    future = predictor.predict(request)
    assert future.shape == (2, 3, HORIZON, 2)
    np.testing.assert_allclose(future[0].numpy(), request.future_tracks.numpy(), atol=0.5)  # 2 px / frame to the right


def test_frames_to_tracks_settings_samples_and_errors(tmp_path: Path) -> None:
    texture = _texture(1)
    cond = torch.from_numpy(texture).permute(2, 0, 1)[None].float() / 255
    gen = tmp_path / "gen"
    # two samples per clip, generated without the conditioning frame: frame 0 is already one step ahead
    for s, speed in enumerate((2.0, -2.0)):
        frames = _sliding(texture, HORIZON, speed, offset=1)
        clip_dir = gen / "clip1"
        clip_dir.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(clip_dir / f"sample_{s}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
        for frame in frames:
            writer.write(frame[:, :, ::-1])
        writer.release()
    (gen / "frames_to_tracks.json").write_text(json.dumps({"includes_conditioning_frame": False, "samples_per_clip": 2}))
    predictor = FramesToTracksPredictor(gen)
    assert predictor.stochastic and predictor.max_samples == 2
    future = predictor.predict(request_from_window(_window(cond), HORIZON, 2, "clip1"))
    start = torch.tensor([[60.0, 80.0], [128.0, 128.0], [190.0, 150.0]])
    steps = torch.arange(1, HORIZON + 1.0)
    np.testing.assert_allclose(future[0, :, :, 0].numpy(), (start[:, :1] + 2 * steps).numpy(), atol=1.0)
    np.testing.assert_allclose(future[1, :, :, 0].numpy(), (start[:, :1] - 2 * steps).numpy(), atol=1.0)

    with pytest.raises(ValueError, match="2 generated videos, 3 samples"):
        predictor.predict(request_from_window(_window(cond), HORIZON, 3, "clip1"))
    with pytest.raises(FileNotFoundError, match="no generated video for clip 'other'"):
        predictor.predict(request_from_window(_window(cond), HORIZON, 2, "other"))
    with pytest.raises(ValueError, match="needs the request's clip_id"):
        predictor.predict(request_from_window(_window(cond), HORIZON, 2, ""))
    short = tmp_path / "short"
    _write_frames(short / "clip1", _sliding(texture, 3, 1.0))
    with pytest.raises(ValueError, match="gives 3 frames.*7 are needed"):
        FramesToTracksPredictor(short).predict(request_from_window(_window(cond), HORIZON, 1, "clip1"))
    (short / "frames_to_tracks.json").write_text(json.dumps({"fps": 3}))
    with pytest.raises(ValueError, match="unknown fields \\['fps'\\]"):
        FramesToTracksPredictor(short)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_predictor(f"frames-to-tracks:{tmp_path / 'missing'}")
