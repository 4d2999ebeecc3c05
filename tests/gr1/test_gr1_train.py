"""GR-1 training with accelerate: the loss decreases, checkpoints are atomic and resume exactly (paper §4.4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.utils import set_seed

sys.path.insert(0, str(Path(__file__).parent))
from gr1_testdata import write_fake_calvin  # noqa: E402

from arfm.checkpoint import load_training_state  # noqa: E402
from integrations.gr1.data import CalvinWindowDataset, collate_gr1  # noqa: E402
from integrations.gr1.modeling_gr1 import GR1Policy, gr1_loss  # noqa: E402
from integrations.gr1.train import StepBatchSampler, TrainArgs, find_checkpoint, lr_lambda, main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_fake_calvin(tmp_path_factory.mktemp("calvin") / "training")


def args(data: Path, out: Path, **kw) -> TrainArgs:
    base = dict(data=str(data), out=str(out), steps=4, batch_size=4, warmup_steps=2, log_every=1, save_every=100, track_dropout=0.0)
    return TrainArgs(**(base | kw))


def fixed_batch_loss(policy: GR1Policy, data: Path) -> dict[str, float]:
    ds = CalvinWindowDataset(data, max_points=64)
    batch = collate_gr1([ds[i] for i in range(0, len(ds), 2)])
    with torch.no_grad():
        return gr1_loss(policy.eval(), batch)[1]


def test_tiny_training_lowers_the_loss_and_writes_a_checkpoint(data: Path, tmp_path: Path) -> None:
    run = args(data, tmp_path / "run", steps=40, save_every=20)
    set_seed(run.seed)
    initial = GR1Policy(run.model_config())  # main() seeds the same way, so this is its starting point
    before = fixed_batch_loss(initial, data)
    ckpt = main(run)
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "config.json", "model.safetensors", "train_args.json", "training_state.json", "training_state.safetensors"
    ]
    assert load_training_state(ckpt)["step"] == 40
    assert json.loads((ckpt / "train_args.json").read_text())["steps"] == 40
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".checkpoint.")]  # no leftovers
    assert any((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))  # tensorboard, the shared run layout
    after = fixed_batch_loss(GR1Policy.from_pretrained(ckpt), data)
    # the fake frames are noise (video terms fall little) and GPT-2's small init has a plateau
    # of a few dozen steps before actions are fitted, so the bar is modest but well above noise
    assert after["loss"] < 0.95 * before["loss"], (before, after)
    assert after["arm"] < before["arm"] and after["video_static"] < before["video_static"], (before, after)


def test_resumed_run_matches_an_uninterrupted_one(data: Path, tmp_path: Path) -> None:
    straight = main(args(data, tmp_path / "a", steps=4))
    main(args(data, tmp_path / "b", steps=2))
    resumed = main(args(data, tmp_path / "b", steps=4, resume=True))
    assert load_training_state(resumed)["step"] == 4
    a, b = GR1Policy.from_pretrained(straight).state_dict(), GR1Policy.from_pretrained(resumed).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main(args(data, tmp_path / "empty", resume=True))


def test_ctrl_c_finishes_the_step_saves_and_resume_matches(data: Path, tmp_path: Path, monkeypatch) -> None:
    import os
    import signal

    import integrations.gr1.train as gr1_train

    real_step = gr1_train._train_step

    def step_then_ctrl_c(*a, **kw):
        step = real_step(*a, **kw)
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # noted by the handler; the run stops after this step
        return step

    monkeypatch.setattr(gr1_train, "_train_step", step_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        main(args(data, tmp_path / "b", steps=4))
    assert load_training_state(tmp_path / "b" / "checkpoint")["step"] == 2  # save_every is 100: the interrupt saved
    monkeypatch.setattr(gr1_train, "_train_step", real_step)
    resumed = main(args(data, tmp_path / "b", steps=4, resume=True))
    straight = main(args(data, tmp_path / "a", steps=4))
    a, b = GR1Policy.from_pretrained(straight).state_dict(), GR1Policy.from_pretrained(resumed).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)


def test_find_checkpoint_recovers_the_copy_moved_aside(tmp_path: Path) -> None:
    assert find_checkpoint(tmp_path) is None
    aside = tmp_path / ".checkpoint.old-00000000000000000001-abcd0123"  # a kill between the two renames
    aside.mkdir()
    (aside / "training_state.json").write_text("{}")
    (tmp_path / ".checkpoint.tmp-00000000000000000002-abcd0123").mkdir()  # incomplete: discarded
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoint"
    assert (tmp_path / "checkpoint" / "training_state.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_step_batch_sampler_is_a_function_of_the_step() -> None:
    full = list(StepBatchSampler(10, 4, seed=3, start_step=0, total_steps=6))
    tail = list(StepBatchSampler(10, 4, seed=3, start_step=2, total_steps=6))
    assert full[2:] == tail and len(full) == 6
    first_epoch = [i for batch in full for i in batch][:10]
    assert sorted(first_epoch) == list(range(10))  # every window once per epoch
    two = list(StepBatchSampler(10, 2, seed=3, start_step=0, total_steps=3, num_replicas=2))
    assert [i for b in two for i in b] == [i for b in StepBatchSampler(10, 4, 3, 0, 3) for i in b]


def test_warmup_then_cosine_schedule() -> None:
    f = lr_lambda(warmup=4, total=12)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(8) == pytest.approx(0.5) and f(12) == pytest.approx(0.0)


def test_bad_flags_name_the_field() -> None:
    with pytest.raises(ValueError, match="'steps'"):
        TrainArgs(data="x", out="y", steps=0)


def test_script_runs_as_plain_python(data: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "integrations" / "gr1" / "train.py"), "--data", str(data), "--out", str(tmp_path / "cli"),
           "--steps", "1", "--batch-size", "2", "--no-use-tracks"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((tmp_path / "cli" / "checkpoint" / "config.json").read_text())
    assert config["use_tracks"] is False and config["hidden"] == 64


@pytest.mark.slow
def test_two_process_accelerate_launch_on_cpu(data: Path, tmp_path: Path) -> None:
    """The multi-process path (DDP over gloo) of the same script."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "integrations" / "gr1" / "train.py"),
           "--data", str(data), "--out", str(tmp_path / "ddp"), "--steps", "2", "--batch-size", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_training_state(tmp_path / "ddp" / "checkpoint")["step"] == 2


def test_cached_small_frames_give_the_policy_the_same_inputs(data: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    full, small = CalvinWindowDataset(copy, max_points=64), CalvinWindowDataset(copy, max_points=64, image_size=32)
    policy = GR1Policy(TrainArgs(data="x", out="y").model_config()).eval()
    ids = [0, len(full) // 2, len(full) - 1]
    a, b = collate_gr1([full[i] for i in ids]), collate_gr1([small[i] for i in ids])
    assert b["rgb_static"].shape[-2:] == (32, 32) and b["rgb_static"].dtype == torch.float32
    for key in ("rgb_static", "rgb_gripper", "future_static", "future_gripper"):
        torch.testing.assert_close(policy.prepare_images(b[key]), policy.prepare_images(a[key]), atol=1e-6, rtol=0)
    for key in ("actions", "robot_obs", "tracks", "valid", "future_valid"):
        assert torch.equal(a[key], b[key]), key
    with torch.no_grad():
        assert gr1_loss(policy, b)[1]["loss"] == pytest.approx(gr1_loss(policy, a)[1]["loss"], rel=1e-5)
    # Frames already read come from memory: the files are no longer needed for them.
    for frame in copy.glob("episode_*.npz"):
        frame.unlink()
    again = collate_gr1([small[i] for i in ids])
    assert torch.equal(again["rgb_static"], b["rgb_static"]) and torch.equal(again["actions"], b["actions"])
    with pytest.raises(FileNotFoundError, match="episode_"):
        full[0]


def test_track_encoder_pretraining_fits_actions_and_initialises_the_policy(data: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from integrations.gr1.pretrain_tracks import PretrainArgs, load_track_encoder, pretrain, track_action_pairs

    tracks, actions = track_action_pairs(CalvinWindowDataset(data, max_points=64))
    assert tracks.shape[2:] == (16, 2) and actions.shape == (tracks.shape[0], 7) and len(tracks) > 20
    weights = tmp_path / "enc.safetensors"
    stats = pretrain(PretrainArgs(data=str(data), out=str(weights), steps=60, batch_size=16))
    assert weights.is_file() and json.loads(weights.with_suffix(".json").read_text())["frames"] == tracks.shape[0]
    assert stats["last_loss"] < stats["first_loss"]
    ckpt = main(args(data, tmp_path / "run", steps=1, lr=1e-12, warmup_steps=0, track_encoder_init=str(weights)))
    from safetensors.torch import load_file

    loaded, saved = GR1Policy.from_pretrained(ckpt).track_encoder.state_dict(), load_file(weights)
    for k in saved:
        torch.testing.assert_close(loaded[k], saved[k], atol=1e-6, rtol=0, msg=k)
    policy = GR1Policy(TrainArgs(data="x", out="y").model_config())
    with pytest.raises(FileNotFoundError, match="pretrain_tracks"):
        load_track_encoder(policy.track_encoder, tmp_path / "missing.safetensors")
    save_file({"cls_token": torch.zeros(1, 1, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="other.safetensors"):
        load_track_encoder(policy.track_encoder, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="'steps'"):
        PretrainArgs(data="x", out="y", steps=0)
