"""CALVIN long-horizon evaluation of GR-1: metrics, online track conditioning, feature caching,
and one short chain on the embedded env (paper §4.4, Table 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from arfm.predictors import build_predictor
from integrations.gr1.configuration_gr1 import tiny_gr1_config
from integrations.gr1.eval_backends import EmbeddedBackend, RealCalvinBackend, grid_points
from integrations.gr1.evaluate import EvalArgs, EvalResult, evaluate, format_table, load_result, main, summarize, write_results
from integrations.gr1.modeling_gr1 import GR1Policy
from integrations.gr1.policy_runner import GR1Runner, OnlineTrackConditioner

L = 16


@pytest.fixture(scope="module")
def policy() -> GR1Policy:
    torch.manual_seed(0)
    return GR1Policy(tiny_gr1_config()).eval()


@pytest.fixture(scope="module")
def backend():
    env = EmbeddedBackend(seed=0, num_points=8)
    yield env
    env.close()


def test_summarize_by_hand() -> None:
    rates, avg = summarize([0, 1, 5, 2])
    assert rates == [0.75, 0.5, 0.25, 0.25, 0.25] and avg == 2.0
    with pytest.raises(ValueError, match="no chains"):
        summarize([])
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        summarize([6])


def test_table_layout_and_result_files(tmp_path: Path) -> None:
    a = EvalResult("GR-1", "none", 4, [0.75, 0.5, 0.25, 0.25, 0.25], 2.0, [{"tasks": ["open_drawer"], "completed": 1}])
    b = EvalResult("GR-1 + ARFM", "arfm:x", 4, [1.0, 1.0, 0.5, 0.25, 0.0], 2.75)
    table = format_table([a, b])
    assert table.splitlines()[0] == "| Method | Tracks | Chains | 1 | 2 | 3 | 4 | 5 | Avg. Len. |"
    assert "| GR-1 | none | 4 | 0.750 | 0.500 | 0.250 | 0.250 | 0.250 | 2.00 |" in table
    assert table.splitlines()[-1].endswith("| 0.000 | 2.75 |")
    write_results(tmp_path / "a", a)
    write_results(tmp_path / "b", b)
    assert load_result(tmp_path / "a" / "results.json") == a
    assert (tmp_path / "a" / "results.md").read_text().strip() == format_table([a])
    merged = main(EvalArgs(table=[str(tmp_path / "a" / "results.json"), str(tmp_path / "b" / "results.json")]))
    assert merged == table
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_result(tmp_path / "missing.json")


def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)


def test_conditioner_maps_coordinates_and_prefixes_the_current_points() -> None:
    points = np.array([[10.5, 20.5], [150.0, 199.0]], np.float32)
    visible = np.array([True, False])
    still = OnlineTrackConditioner(build_predictor("no-movement"), L, 200)(frame(), points, visible, "open the drawer")
    assert still.shape == (2, L, 2)
    torch.testing.assert_close(still, torch.from_numpy(points)[:, None].expand(-1, L, -1), atol=1e-4, rtol=0)
    assert OnlineTrackConditioner(build_predictor("none"), L, 200)(frame(), points, visible, "x") is None


def test_conditioner_serves_ground_truth_only_to_predictors_that_ask() -> None:
    points = np.array([[50.0, 60.0]], np.float32)
    calls = []

    def future(horizon: int):
        calls.append(horizon)
        steps = np.arange(1, horizon + 1, dtype=np.float32)
        return points[:, None] + np.stack([steps, -steps], -1)[None], np.ones((1, horizon), bool)

    gt = OnlineTrackConditioner(build_predictor("gt"), L, 200)
    tracks = gt(frame(), points, np.ones(1, bool), "x", future)
    assert gt.needs_ground_truth is True and calls == [L - 1]
    expected = np.concatenate([points[:, None], future(L - 1)[0]], axis=1)
    torch.testing.assert_close(tracks, torch.from_numpy(expected), atol=1e-4, rtol=0)
    still = OnlineTrackConditioner(build_predictor("no-movement"), L, 200)
    still(frame(), points, np.ones(1, bool), "x", future)
    assert still.needs_ground_truth is False and len(calls) == 2  # never called for it
    with pytest.raises(ValueError, match="cannot give"):
        OnlineTrackConditioner(build_predictor("gt"), L, 200)(frame(), points, np.ones(1, bool), "x", None)


def test_streaming_predictors_are_reset_per_subtask_and_updated_per_step() -> None:
    """A predictor with ``stream`` keeps a horizon (paper §3.4) instead of predicting afresh."""
    events = []

    class Stream:
        def __init__(self, tracker):
            self.tracker = tracker  # the conditioner's point tracker: where the queries are now

        def reset(self, frame, queries, text):
            events.append(("reset", frame.shape, queries.copy(), text))
            return np.repeat(queries[:, None], L - 1, axis=1)

        def update(self, frame):
            events.append(("update", frame.shape, self.tracker.points.copy()))
            return np.repeat(self.tracker.points[:, None], L - 1, axis=1)

    class Streaming:
        name, stochastic = "streaming", True

        def predict(self, request):
            raise AssertionError("a streaming predictor must not be asked to predict from scratch")

        def stream(self, horizon, tracker=None, seed=0):
            assert horizon == L - 1
            return Stream(tracker)

    conditioner = OnlineTrackConditioner(Streaming(), L, 200)
    points = np.array([[100.0, 50.0]], np.float32)
    conditioner(frame(), points, np.ones(1, bool), "open the drawer")
    moved = conditioner(frame(), points + 10, np.ones(1, bool), "open the drawer")
    conditioner.reset()
    conditioner(frame(), points, np.ones(1, bool), "close the drawer")
    assert [e[0] for e in events] == ["reset", "update", "reset"]
    assert events[0][1] == (256, 256, 3) and events[0][3] == "open the drawer"
    np.testing.assert_allclose(events[1][2], (points + 10) * 256 / 200, atol=1e-4)  # camera -> model pixels
    torch.testing.assert_close(moved[:, 1], torch.from_numpy(points + 10), atol=1e-3, rtol=0)  # and back


def test_conditioner_rejects_a_badly_shaped_prediction() -> None:
    class Bad:
        name, stochastic = "bad", False

        def predict(self, request):
            return torch.zeros(1, 3, 2, 2)

    with pytest.raises(ValueError, match="returned"):
        OnlineTrackConditioner(Bad(), L, 200)(frame(), np.zeros((2, 2), np.float32), np.ones(2, bool), "x")


def test_runner_cache_equals_recomputing_the_window(policy: GR1Policy) -> None:
    runner = GR1Runner(policy)
    runner.reset("open the drawer")
    rng = np.random.default_rng(1)
    obs_seq, tracks_seq = [], []
    for k in range(12):
        obs = {"rgb_obs": {"rgb_static": rng.integers(0, 255, (200, 200, 3), dtype=np.uint8),
                           "rgb_gripper": rng.integers(0, 255, (84, 84, 3), dtype=np.uint8)},
               "robot_obs": rng.normal(size=15)}
        tracks = None if k % 3 == 0 else torch.from_numpy(rng.uniform(0, 200, (5, L, 2)).astype(np.float32))
        action = runner.act(obs, tracks)
        obs_seq.append(obs)
        tracks_seq.append(tracks)
    assert action.shape == (7,) and abs(action[6]) == 1.0 and np.all(np.abs(action[:6]) <= 1.0)
    assert len(runner.static) == 10 and runner.frames_encoded == 12
    # recompute the last window (steps 2..11) from scratch
    window = obs_seq[2:]
    with torch.no_grad():
        chw = lambda key: torch.stack([torch.from_numpy(o["rgb_obs"][key]).permute(2, 0, 1) for o in window])[None]  # noqa: E731
        tokens = torch.cat([policy.encode_tracks(None if t is None else t[None, None], batch_shape=(1, 1)) for t in tracks_seq[2:]], dim=1)
        out = policy(policy.encode_images(chw("rgb_static")), policy.encode_images(chw("rgb_gripper")), policy.encode_text(["open the drawer"]),
                     torch.tensor(np.stack([o["robot_obs"] for o in window]), dtype=torch.float32)[None], tokens)
    np.testing.assert_allclose(action[:6], out.arm[0, -1].clamp(-1, 1).numpy(), atol=1e-5)


def test_one_short_chain_on_the_embedded_env(policy: GR1Policy, backend: EmbeddedBackend) -> None:
    for spec in ("none", "gt"):
        result = evaluate(policy, backend, spec, num_chains=1, seed=0, max_steps=3)
        assert result.num_chains == 1 and len(result.chains[0]["tasks"]) == 5
        assert result.chains[0]["completed"] == 0  # an untrained policy does nothing useful in 3 steps
        assert result.success_rates == [0.0] * 5 and result.avg_len == 0.0
    with pytest.raises(KeyError, match="unknown track predictor"):
        evaluate(policy, backend, "bogus", num_chains=1, max_steps=1)


def test_progress_file_gets_a_line_per_chain(policy: GR1Policy, backend: EmbeddedBackend, tmp_path: Path) -> None:
    progress = tmp_path / "run" / "chains.jsonl"
    progress.parent.mkdir()
    progress.write_text("stale line of an earlier run\n")
    result = evaluate(policy, backend, "none", num_chains=2, seed=0, max_steps=2, progress=progress)
    lines = [json.loads(line) for line in progress.read_text().splitlines()]
    assert lines == result.chains and len(lines) == 2


def test_cli_evaluates_a_checkpoint(policy: GR1Policy, tmp_path: Path) -> None:
    policy.save_pretrained(tmp_path / "ckpt")
    text = main(EvalArgs(checkpoint=str(tmp_path / "ckpt"), tracks="no-movement", num_chains=1, max_steps=2, out=str(tmp_path / "res")))
    assert "| GR-1 + tracks:no-movement | no-movement | 1 |" in text
    assert json.loads((tmp_path / "res" / "results.json").read_text())["num_chains"] == 1


def test_real_calvin_needs_its_repository() -> None:
    with pytest.raises(ImportError, match="github.com/mees/calvin"):
        RealCalvinBackend("/nonexistent")


def test_grid_points_are_pixel_centres() -> None:
    pts = grid_points(200, 4)
    assert pts.shape == (16, 2) and pts[0].tolist() == [25.0, 25.0] and pts[-1].tolist() == [175.0, 175.0]


def test_an_arfm_checkpoint_conditions_the_policy(policy: GR1Policy, backend: EmbeddedBackend, tmp_path: Path) -> None:
    """``arfm:<ckpt>`` through the registry: frames go in at 256 px, tracks come back in camera pixels."""
    from arfm.checkpoint import save_checkpoint
    from arfm.config import tiny_model_config
    from arfm.model import TrackShiftFlowPredictor

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "arfm", TrackShiftFlowPredictor(tiny_model_config()))
    conditioner = OnlineTrackConditioner(build_predictor(f"arfm:{tmp_path / 'arfm'}"), L, 200)
    points = np.array([[30.0, 40.0], [120.0, 90.0], [180.0, 10.0]], np.float32)
    tracks = conditioner(frame(), points, np.ones(3, bool), "open the drawer")
    assert tracks.shape == (3, L, 2) and torch.isfinite(tracks).all() and conditioner.needs_ground_truth is False
    torch.testing.assert_close(tracks[:, 0], torch.from_numpy(points))
    result = evaluate(policy, backend, f"arfm:{tmp_path / 'arfm'}", num_chains=1, max_steps=2)
    assert result.num_chains == 1 and result.avg_len == 0.0


def test_cli_passes_the_ground_truth_mode(policy: GR1Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import integrations.gr1.evaluate as evaluate_module

    made = []

    def spy(*args, **kwargs):
        backend = EmbeddedBackend(seed=kwargs.get("seed", 0), num_points=4, ground_truth_mode=kwargs["ground_truth_mode"])
        made.append(backend)
        return backend

    monkeypatch.setattr(evaluate_module, "make_backend", spy)
    policy.save_pretrained(tmp_path / "ckpt")
    main(EvalArgs(checkpoint=str(tmp_path / "ckpt"), tracks="gt", num_chains=1, max_steps=2, ground_truth_mode="from_start"))
    assert [b.ground_truth_mode for b in made] == ["from_start"]
