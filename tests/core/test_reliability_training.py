"""Reliability of training (issue 14): kills mid-save, exact mid-epoch resume, Ctrl-C, no pickle,
bad clips named at load, every dropped clip reported, exact ``model.sample``."""

from __future__ import annotations

import json
import os
import signal
import warnings

import numpy as np
import pytest
import torch

import arfm.atomic
from arfm.checkpoint import LEGACY_STATE_FILE, find_checkpoint, load_model, load_training_state, save_checkpoint, save_training_state
from arfm.config import tiny_model_config, tiny_train_config
from arfm.data.clip_store import write_clip, write_manifest
from arfm.data.dataset import LabelledTrackDataset, eval_windows
from arfm.model import TrackShiftFlowPredictor
from arfm.train import run_training

from tests.core.factories import perturbed_model, small_batch

MODEL = dict(horizon=4, max_points=16, depth=2, dim=64, flow_depth=1)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raising line runs (no ``except Exception`` catches it)."""


def _step(ckpt) -> int:
    return json.loads((ckpt / "config.json").read_text())["step"]


def _hidden(parent) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- 1. a kill between the renames
def test_kill_between_moving_aside_and_renaming_in_recovers_the_new_checkpoint(tmp_path, monkeypatch):
    model = TrackShiftFlowPredictor(tiny_model_config(**MODEL))
    ckpt = tmp_path / "checkpoint"
    save_checkpoint(ckpt, model, step=1)
    real_replace = os.replace

    def kill_on_install(src, dst):
        if str(dst) == str(ckpt):  # the old one is already aside: the worst moment
            raise Killed
        real_replace(src, dst)

    monkeypatch.setattr(arfm.atomic.os, "replace", kill_on_install)
    with pytest.raises(Killed):
        save_checkpoint(ckpt, model, step=2)
    monkeypatch.setattr(arfm.atomic.os, "replace", real_replace)
    assert not ckpt.exists()
    assert [n.split("-")[0] for n in _hidden(tmp_path)] == [".checkpoint.old", ".checkpoint.ready"]

    assert find_checkpoint(ckpt) == ckpt
    assert _step(ckpt) == 2  # the newest complete one
    assert _hidden(tmp_path) == []
    assert load_model(ckpt).config == model.config


def test_kill_while_writing_keeps_the_previous_checkpoint_and_cleans_up(tmp_path):
    model = TrackShiftFlowPredictor(tiny_model_config(**MODEL))
    ckpt = tmp_path / "checkpoint"
    save_checkpoint(ckpt, model, step=1)
    with pytest.raises(Killed):
        with arfm.atomic.atomic_dir(ckpt) as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            raise Killed
    assert _step(ckpt) == 1
    # leftovers of an older writer: an incomplete tmp and a stale copy beside a complete checkpoint
    (tmp_path / ".checkpoint.tmp-1234abcd").mkdir()
    (tmp_path / ".checkpoint.old-5678ef01").mkdir()
    save_checkpoint(ckpt, model, step=3)
    assert _step(ckpt) == 3 and _hidden(tmp_path) == []


def test_legacy_leftovers_without_checkpoint_recover_the_old_copy(tmp_path):
    model = TrackShiftFlowPredictor(tiny_model_config(**MODEL))
    save_checkpoint(tmp_path / "checkpoint", model, step=5)
    os.replace(tmp_path / "checkpoint", tmp_path / ".checkpoint.old-abcdef12")  # what the old code left
    (tmp_path / ".checkpoint.tmp-12345678").mkdir()  # incomplete: never chosen
    assert _step(find_checkpoint(tmp_path / "checkpoint")) == 5
    assert _hidden(tmp_path) == []
    assert find_checkpoint(tmp_path / "nothing") is None


# ---------------------------------------------------------------- labelled data made by the tests
def _write_labelled(root, lengths, seed=0, visible=True):
    rng = np.random.default_rng(seed)
    for i, length in enumerate(lengths):
        frames = rng.integers(0, 255, size=(length, 256, 256, 3), dtype=np.uint8)
        start = rng.uniform(30, 220, size=(24, 1, 2))
        velocity = rng.normal(0, 2.0, size=(24, 1, 2))
        tracks = (start + velocity * np.arange(length)[None, :, None]).astype(np.float32)
        vis = rng.random((24, length)) < 0.9 if visible else np.zeros((24, length), bool)
        write_clip(root, f"clip{i}", frames, tracks, vis, fps=10.0, caption=f"thing {i} moves")
    write_manifest(root)
    return root


def _labelled_dataset(root, **kw) -> LabelledTrackDataset:
    return LabelledTrackDataset(root, split="all", num_points=16, horizon=4, max_cond_frames=2, seed=0, **kw)


def _train_cfg(steps, **kw):
    base = dict(steps=steps, batch_size=2, log_every=1, save_every=100, max_cond_frames=2, warmup_steps=2)
    return tiny_train_config(**(base | kw))


def _weights(ckpt) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors")) | {f"ema.{k}": v for k, v in load_file(str(ckpt / "ema.safetensors")).items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    # 6 clips of 9..14 frames and windows of 6 frames: 3 batches of 2 per epoch, draws differ per epoch
    return _write_labelled(tmp_path_factory.mktemp("labelled"), [9, 10, 11, 12, 13, 14])


# ---------------------------------------------------------------- 2 + 4. exact resume, Ctrl-C
def test_stop_mid_epoch_and_resume_gives_identical_weights(labelled, tmp_path):
    cfg = tiny_model_config(**MODEL)
    straight = run_training(cfg, _train_cfg(6), _labelled_dataset(labelled), tmp_path / "straight", show_progress=False)
    # stop at step 4 (epoch 1, second batch), then continue with a fresh process's objects
    run_training(cfg, _train_cfg(4), _labelled_dataset(labelled), tmp_path / "resumed", show_progress=False)
    state = load_training_state(tmp_path / "resumed" / "checkpoint")
    assert state["dataset"]["epoch"] == 1 and len(state["dataset"]["clip_ids"]) == 6  # the dataset's state travels too
    torch.manual_seed(12345)  # whatever the global RNG holds before the resume must not matter
    resumed = run_training(cfg, _train_cfg(6), _labelled_dataset(labelled), tmp_path / "resumed", resume=True, show_progress=False)
    assert _step(resumed) == 6
    _assert_same(_weights(straight), _weights(resumed))


def test_ctrl_c_saves_the_last_step_and_resume_is_exact(labelled, tmp_path):
    cfg = tiny_model_config(**MODEL)
    straight = run_training(cfg, _train_cfg(7), _labelled_dataset(labelled), tmp_path / "straight", show_progress=False)

    def interrupt(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, _train_cfg(7), _labelled_dataset(labelled), tmp_path / "run", show_progress=False, on_step=interrupt)
    assert _step(tmp_path / "run" / "checkpoint") == 5  # save_every is 100: only the interrupt saved
    resumed = run_training(cfg, _train_cfg(7), _labelled_dataset(labelled), tmp_path / "run", resume=True, show_progress=False)
    _assert_same(_weights(straight), _weights(resumed))


def test_a_real_sigint_finishes_the_step_then_saves_and_stops(labelled, tmp_path):
    cfg = tiny_model_config(**MODEL)
    seen = []

    def ctrl_c(step):
        seen.append(step)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only notes it; the loop stops after this step

    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, _train_cfg(6), _labelled_dataset(labelled), tmp_path / "run", show_progress=False, on_step=ctrl_c)
    assert seen == [1, 2] and _step(tmp_path / "run" / "checkpoint") == 2
    assert signal.getsignal(signal.SIGINT) is previous  # the default Ctrl-C is back


def test_resume_after_a_kill_mid_swap_continues_from_the_saved_step(labelled, tmp_path):
    cfg = tiny_model_config(**MODEL)
    straight = run_training(cfg, _train_cfg(5), _labelled_dataset(labelled), tmp_path / "straight", show_progress=False)
    run = tmp_path / "run"
    run_training(cfg, _train_cfg(3), _labelled_dataset(labelled), run, show_progress=False)
    os.replace(run / "checkpoint", run / ".checkpoint.old-00000000000000000001-abcd0123")
    (run / ".checkpoint.tmp-00000000000000000002-abcd0123").mkdir()
    resumed = run_training(cfg, _train_cfg(5), _labelled_dataset(labelled), run, resume=True, show_progress=False)
    _assert_same(_weights(straight), _weights(resumed))  # from step 0 it would differ
    assert _hidden(run) == []


def test_resume_without_a_checkpoint_is_an_error_and_auto_starts_afresh(labelled, tmp_path):
    cfg = tiny_model_config(**MODEL)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run_training(cfg, _train_cfg(1), _labelled_dataset(labelled), tmp_path / "empty", resume=True, show_progress=False)
    assert _step(run_training(cfg, _train_cfg(1), _labelled_dataset(labelled), tmp_path / "auto", resume="auto", show_progress=False)) == 1


def test_cli_resume_without_a_checkpoint_is_an_error(tmp_path):
    from arfm.train import main

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(["--out", str(tmp_path / "run"), "--resume", "--steps", "1"])


# ---------------------------------------------------------------- 3. no pickle
def test_training_state_round_trips_without_pickle(tmp_path):
    import random

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=1e-3, betas=(0.8, 0.9))
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": {"numpy": np.random.get_state(), "python": random.getstate(), "torch": torch.get_rng_state()}}
    save_training_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_state.json", "training_state.safetensors"]
    back = load_training_state(tmp_path)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    np.random.set_state(back["rng"]["numpy"])
    random.setstate(back["rng"]["python"])
    assert back["rng"]["numpy"][1].dtype == np.uint32 and torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    base = torch.arange(6.0)  # views of one storage (safetensors would refuse them as they are)
    save_training_state(tmp_path, {"halves": [base[:3], base[3:]], "whole": base})
    back = load_training_state(tmp_path)
    assert torch.equal(torch.cat(back["halves"]), back["whole"]) and torch.equal(back["whole"], base)
    with pytest.raises(TypeError, match="optimizer.hook"):
        save_training_state(tmp_path, {"optimizer": {"hook": object()}})


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_training_state_is_refused_not_run(labelled, tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", TrackShiftFlowPredictor(tiny_model_config(**MODEL)), step=1)
    torch.save({"optimizer": {}, "payload": _Exploit(marker)}, run / "checkpoint" / LEGACY_STATE_FILE)
    with pytest.raises(ValueError, match="refusing to load"):
        load_training_state(run / "checkpoint")
    with pytest.raises(ValueError, match="refusing to load"):
        run_training(tiny_model_config(**MODEL), _train_cfg(2), _labelled_dataset(labelled), run, resume=True, show_progress=False)
    from integrations.chois.checkpointing import load_training_state as chois_state  # GR-1 and CHOIS share the loader

    with pytest.raises(ValueError, match="refusing to load"):
        chois_state(run / "checkpoint")
    assert not marker.exists()


# ---------------------------------------------------------------- 5. bad clips named at load
def _corrupt(root, clip, name, array):
    np.save(root / "clips" / clip / name, array)


@pytest.mark.parametrize(
    "name, make, reason",
    [
        ("tracks.npy", lambda t, v: np.where(np.arange(t.shape[1])[None, :, None] == 3, np.nan, t).astype(np.float16), "NaN"),
        ("tracks.npy", lambda t, v: (t * 0 + 60000).astype(np.float16), "outside"),
        ("visible.npy", lambda t, v: v.astype(np.float32), "not bool"),
    ],
)
def test_a_bad_clip_is_named_at_load_and_skipped_when_asked(tmp_path, name, make, reason):
    root = _write_labelled(tmp_path, [8, 8, 8])
    tracks, visible = np.load(root / "clips/clip1/tracks.npy"), np.load(root / "clips/clip1/visible.npy")
    _corrupt(root, "clip1", name, make(tracks, visible))
    with pytest.raises(ValueError, match=f"clip1.*{reason}"):
        _labelled_dataset(root)
    with pytest.warns(UserWarning, match="clip1"):
        ds = _labelled_dataset(root, bad_clips="skip")
    assert len(ds) == 2 and reason in ds.dropped["clip1"]
    with pytest.raises(ValueError, match=f"clip1.*{reason}"):
        list(eval_windows(root, num_points=8, horizon=4, min_movement=0))


def test_an_all_invisible_dataset_is_an_error_not_a_zero_loss(tmp_path):
    root = _write_labelled(tmp_path, [8, 8], visible=False)
    with pytest.raises(ValueError, match="clip0: no track point is visible"):
        _labelled_dataset(root)


# ---------------------------------------------------------------- 6. every dropped clip reported
def test_short_clips_are_reported_with_the_reason(tmp_path):
    root = _write_labelled(tmp_path, [5, 8, 3])
    with pytest.warns(UserWarning, match="left out 2 of 3"):
        ds = _labelled_dataset(root)
    assert ds.dropped == {
        "clip0": "5 frames, a window needs 6 (max_cond_frames 2 + horizon 4)",
        "clip2": "3 frames, a window needs 6 (max_cond_frames 2 + horizon 4)",
    }


def test_eval_reports_every_dropped_clip_in_the_result_and_the_table(tmp_path):
    from arfm.evaluation.cli import EvalConfig, run_eval

    root = tmp_path / "data"
    _write_labelled(root, [8, 3, 8])
    tracks = np.load(root / "clips/clip2/tracks.npy")
    _corrupt(root, "clip2", "tracks.npy", np.repeat(tracks[:, :1], tracks.shape[1], axis=1))  # nothing moves
    config = EvalConfig(data=root, out=tmp_path / "eval", horizon=4, num_points=8, min_movement=1.0, plots=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the report lists them; no duplicate warning
        result, paths = run_eval(config)
    assert result.clip_ids == ["clip0"]
    assert result.skipped == {
        "clip1": "3 frames, the window needs 5 (start 0 + horizon 4 + 1)",
        "clip2": "movement score 0.0 px <= min_movement 1",
    }
    table = paths["markdown"].read_text()
    assert "Scored 1 clips (2 skipped)" in table and "clip1 (3 frames" in table and "clip2 (movement score" in table
    assert json.loads(paths["json"].read_text())["skipped"] == result.skipped


# ---------------------------------------------------------------- 7. sample is exact by default
def test_sample_is_exact_past_the_cache_window_and_the_window_is_opt_in():
    model = perturbed_model(cache_window=3, dim=32, heads=2, depth=2, flow_depth=1)
    batch = small_batch(num_cond=2, horizon=4)
    observed = batch.tracks[:, :, :2]
    kwargs = dict(captions=batch.captions, horizon=9)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    cached = model.sample(batch.frames, observed, generator=gen(), **kwargs)
    full = model.sample(batch.frames, observed, generator=gen(), use_cache=False, **kwargs)
    assert torch.allclose(cached, full, atol=1e-4)
    windowed = model.sample(batch.frames, observed, generator=gen(), cache_window=3, **kwargs)
    assert torch.allclose(windowed[..., :2, :], full[..., :2, :], atol=1e-4)  # identical while the history fits
    assert not torch.allclose(windowed, full, atol=1e-3)  # the streaming window is a different model past it
    with pytest.raises(ValueError, match="cache_window"):
        model.sample(batch.frames, observed, cache_window=-1, **kwargs)
