"""The evaluation protocol, reports, plots and CLI options on hand-made windows with known answers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
import tyro

from arfm.data.batch import TrackWindow
from arfm.evaluation.cli import EvalConfig, labelled_windows, run_eval
from arfm.evaluation.protocol import EvalProtocol, evaluate, request_from_window
from arfm.predictors import PredictionRequest, build_predictor

HORIZON = 8


def _window(num_points: int = 3, speed: float = 2.0, horizon: int = HORIZON, visible: bool = True) -> TrackWindow:
    """Points moving right at ``speed`` px per step; one conditioning frame."""
    start = torch.stack([torch.arange(num_points) * 20.0 + 40.0, torch.full((num_points,), 100.0)], dim=-1)
    steps = torch.arange(horizon + 1, dtype=torch.float32)
    tracks = start[:, None, :] + torch.stack([steps * speed, torch.zeros_like(steps)], dim=-1)[None]
    vis = torch.ones(num_points, horizon + 1, dtype=torch.bool)
    if not visible:
        vis[:, 1:] = False
    frames = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    return TrackWindow(frames=frames, tracks=tracks, visible=vis, caption="move right")


class NoisyOracle:
    """Stochastic test predictor: the ground truth plus Gaussian noise of ``sigma`` px."""

    name = "noisy"
    stochastic = True

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def predict(self, request: PredictionRequest) -> torch.Tensor:
        truth = request.future_tracks[None].expand(request.num_samples, -1, -1, -1)
        return truth + self.sigma * torch.randn(truth.shape)


class WrongShape:
    name = "wrong"
    stochastic = False

    def predict(self, request: PredictionRequest) -> torch.Tensor:
        return torch.zeros(1, 1, 1, 2)


def _protocol(**overrides) -> EvalProtocol:
    return EvalProtocol(**{"horizon": HORIZON, "k_values": (1, 2, 5), "num_qualitative": 2, **overrides})


def test_no_movement_and_gt_give_hand_computed_numbers() -> None:
    windows = [("a", _window()), ("b", _window(num_points=5))]
    result = evaluate({"no-movement": build_predictor("no-movement"), "gt": build_predictor("gt")}, windows, _protocol())
    still, oracle = (p.summary() for p in result.predictors)
    # no movement: errors 2, 4, ..., 16 px at steps 1..8 for every point
    assert still["ade"] == pytest.approx(9.0)
    assert [still["delta"][x] for x in (4, 8, 16, 32, 64)] == pytest.approx([1 / 8, 3 / 8, 7 / 8, 1.0, 1.0])
    assert still["delta_avg"] == pytest.approx((1 / 8 + 3 / 8 + 7 / 8 + 2) / 5)
    assert oracle["ade"] == pytest.approx(0.0) and oracle["delta_avg"] == pytest.approx(1.0)
    assert result.predictors[0].num_samples == 1 and not result.predictors[0].stochastic
    assert result.clip_ids == ["a", "b"]
    clip = result.predictors[0].clips["b"]
    assert clip.scored_per_step == [5] * HORIZON and clip.horizon == HORIZON  # every step scored, none dropped


def test_stochastic_predictor_is_drawn_max_k_times_and_reproducible() -> None:
    windows = [("a", _window()), ("b", _window())]
    first = evaluate({"noisy": NoisyOracle(6.0)}, windows, _protocol(seed=3))
    second = evaluate({"noisy": NoisyOracle(6.0)}, windows, _protocol(seed=3))
    result = first.predictors[0]
    assert result.num_samples == 5
    assert result.clips["a"].num_samples == 5
    assert first.predictors[0].summary() == second.predictors[0].summary()
    summary = result.summary()
    # with more samples the expected best gets better
    assert summary["min_ade_at_k"][5] < summary["min_ade_at_k"][2] < summary["min_ade_at_k"][1]
    assert summary["best_delta_avg_at_k"][5] > summary["best_delta_avg_at_k"][1]
    # the paper's ADE averages samples: mean of |N(0, 36 I_2)| is 6 * sqrt(pi / 2) ~ 7.5
    assert 6.0 < summary["ade"] < 9.0


def test_sharper_forecast_gets_a_better_energy_score() -> None:
    windows = [(str(i), _window()) for i in range(3)]
    result = evaluate({"sharp": NoisyOracle(1.0), "vague": NoisyOracle(10.0)}, windows, _protocol())
    sharp, vague = (p.summary()["energy_score"] for p in result.predictors)
    assert sharp < vague


def test_clips_without_visible_future_are_skipped_and_reported() -> None:
    windows = [("seen", _window()), ("hidden", _window(visible=False))]
    result = evaluate({"no-movement": build_predictor("no-movement")}, windows, _protocol())
    assert result.clip_ids == ["seen"]
    assert "hidden" in result.skipped
    with pytest.raises(ValueError, match="no clip could be scored"):
        evaluate({"no-movement": build_predictor("no-movement")}, [("hidden", _window(visible=False))], _protocol())


def test_protocol_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="'none' gives no tracks|gives no tracks"):
        evaluate({"none": build_predictor("none")}, [("a", _window())], _protocol())
    with pytest.raises(ValueError, match="returned shape"):
        evaluate({"wrong": WrongShape()}, [("a", _window())], _protocol())
    with pytest.raises(ValueError, match="appears twice"):
        evaluate({"gt": build_predictor("gt")}, [("a", _window()), ("a", _window())], _protocol())
    with pytest.raises(ValueError, match="clip 'short'.*4 future steps"):
        request_from_window(_window(horizon=4), HORIZON, 1, "short")
    with pytest.raises(ValueError, match="horizon"):
        EvalProtocol(horizon=0)
    with pytest.raises(ValueError, match="k_values"):
        EvalProtocol(k_values=(0, 2))


def test_request_carries_observed_and_future_parts_of_the_window() -> None:
    window = _window()
    request = request_from_window(window, HORIZON, 5, "clip-7")
    assert request.clip_id == "clip-7" and request.num_samples == 5
    assert torch.equal(request.observed_tracks, window.tracks[:, :1])
    assert torch.equal(request.future_tracks, window.tracks[:, 1:])
    assert request.caption == "move right"


def test_run_eval_writes_tables_json_and_plots(tmp_path: Path) -> None:
    config = EvalConfig(data=tmp_path / "unused", predictors="no-movement,gt", out=tmp_path / "out", horizon=HORIZON, k_values=(1, 2, 5), num_qualitative=2)
    windows = [(f"clip{i}", _window(speed=1.0 + i)) for i in range(3)]
    predictors = {"no-movement": build_predictor("no-movement"), "gt": build_predictor("gt"), "noisy": NoisyOracle(3.0)}
    result, paths = run_eval(config, windows=windows, predictors=predictors)

    rows = list(csv.reader(paths["csv"].read_text().splitlines()))
    assert rows[0] == ["method", "<δ^4", "<δ^8", "<δ^16", "<δ^32", "<δ^64", "<δ^x_avg", "ADE"]
    assert [r[0] for r in rows[1:]] == ["no-movement", "gt", "noisy"]
    assert float(rows[2][-1]) == pytest.approx(0.0) and float(rows[2][-2]) == pytest.approx(1.0)
    assert float(rows[1][-1]) == pytest.approx(result.predictors[0].summary()["ade"], rel=1e-5)

    data = json.loads(paths["json"].read_text())
    assert data["protocol"]["scored_steps"] == list(range(1, HORIZON + 1))
    assert data["clip_ids"] == ["clip0", "clip1", "clip2"]
    assert data["predictors"][0]["clips"]["clip1"]["ade"] == pytest.approx(np.mean(2.0 * np.arange(1, HORIZON + 1)))
    assert data["predictors"][2]["num_samples"] == 5

    markdown = paths["markdown"].read_text()
    assert "| no-movement |" in markdown and "minADE@5" in markdown and "every future step 1..8" in markdown

    for kind in ("delta_curves", "best_of_k", "qualitative"):
        image = matplotlib.image.imread(paths[kind])
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert not list(paths["csv"].parent.glob(".*tmp"))  # atomic writes leave no temporaries
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in paths.values())


def test_eval_config_parses_cli_flags_and_validates(tmp_path: Path) -> None:
    config = tyro.cli(EvalConfig, args=["--data", str(tmp_path), "--predictors", "arfm:runs/x,no-movement", "--max-clips", "3"])
    assert config.specs == ["arfm:runs/x", "no-movement"] and config.max_clips == 3 and config.horizon == 50
    assert config.protocol().stochastic_samples == 5  # Table 1's best-of-5, not the full curve's 20
    full = tyro.cli(EvalConfig, args=["--data", str(tmp_path), "--k-values", "1", "2", "5", "10", "20"])
    assert full.protocol().stochastic_samples == 20
    with pytest.raises(ValueError, match="'predictors'"):
        EvalConfig(data=tmp_path, predictors=" , ")
    with pytest.raises(ValueError, match="appears twice"):
        EvalConfig(data=tmp_path, predictors="gt,gt")
    with pytest.raises(ValueError, match="'num_points'"):
        EvalConfig(data=tmp_path, num_points=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        next(iter(labelled_windows(EvalConfig(data=tmp_path / "missing"))))


def _write_labelled_dataset(root: Path) -> None:
    """Two 12-frame clips: one moving 8 px per frame (kept by the filter), one still (filtered out)."""
    from arfm.data.clip_store import write_clip, write_manifest

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(12, 256, 256, 3), dtype=np.uint8)
    start = rng.uniform(40, 120, size=(30, 1, 2))
    steps = np.arange(12, dtype=np.float64)[None, :, None]
    moving = start + steps * np.array([8.0, 0.0])
    write_clip(root, "moving", frames, moving.astype(np.float32), np.ones((30, 12), bool), fps=10.0, caption="slide right")
    write_clip(root, "still", frames, np.repeat(start, 12, axis=1).astype(np.float32), np.ones((30, 12), bool), fps=10.0)
    write_manifest(root)


def test_arfm_eval_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from arfm.cli import main

    _write_labelled_dataset(tmp_path / "labelled")
    out = tmp_path / "eval"
    main(["eval", "--data", str(tmp_path / "labelled"), "--predictors", "no-movement,gt", "--out", str(out),
          "--horizon", "10", "--num-points", "20", "--min-movement", "50", "--starts", "0", "1"])
    printed = capsys.readouterr().out
    assert "| no-movement |" in printed and "| gt |" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["clip_ids"] == ["moving@0", "moving@1"]  # the still clip fails the 50 px filter
    still = data["predictors"][0]["summary"]
    # 8 px per step over steps 1..10: errors 8, 16, ..., 80 -> ADE 44
    assert still["ade"] == pytest.approx(44.0, abs=0.05)
    assert still["num_scored"] == 2 * 20 * 10
    assert {p.name for p in out.iterdir()} >= {"table.md", "table.csv", "probabilistic.csv", "results.json", "delta_curves.png", "best_of_k.png", "qualitative.png"}
