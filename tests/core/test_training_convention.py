"""One training convention for ARFM, GR-1 and CHOIS: the schedule, the global batch, the run folder
(config.json, logs/, checkpoint/), the scalars' names, EMA, and `arfm train --config` with flags."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from arfm.config import TrainConfig, config_to_dict, tiny_model_config, tiny_train_config
from arfm.run_layout import merge, per_process_batch, read_config_file, write_run_config
from arfm.schedules import lr_factor
from arfm.train import TrainCommand, configs_from_command, run_training

TESTS = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- schedules
def test_constant_schedule_warms_up_linearly_then_holds() -> None:
    f = lr_factor("constant", warmup_steps=4, total_steps=10)
    assert [f(s) for s in range(7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert lr_factor("constant", 0, 10)(0) == 1.0  # no warm-up: the first step at the full rate


def test_cosine_schedule_matches_hand_computed_values() -> None:
    f = lr_factor("cosine", warmup_steps=4, total_steps=12)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # after the warm-up: 0.5 * (1 + cos(pi * (s - 4) / 8))
    assert f(4) == 1.0
    assert f(6) == pytest.approx(0.5 * (1 + math.sqrt(0.5)))  # a quarter of the way: cos(pi/4)
    assert f(8) == pytest.approx(0.5)
    assert f(10) == pytest.approx(0.5 * (1 - math.sqrt(0.5)))
    assert f(12) == pytest.approx(0.0, abs=1e-12) and f(20) == pytest.approx(0.0, abs=1e-12)  # stays at 0 past the end


def test_schedule_drives_lambda_lr_once_per_step() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor("cosine", 2, 6))
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.2, 0.2, 0.2 * 0.5 * (1 + math.cos(math.pi / 4)), 0.1, 0.2 * 0.5 * (1 + math.cos(3 * math.pi / 4))])


@pytest.mark.parametrize(
    ("args", "match"),
    [(("linear", 1, 10), "lr schedule"), (("cosine", -1, 10), "warmup_steps"), (("constant", 0, 0), "total_steps")],
)
def test_bad_schedule_arguments_name_themselves(args, match) -> None:
    with pytest.raises(ValueError, match=match):
        lr_factor(*args)


# ---------------------------------------------------------------- global batch
def test_global_batch_splits_evenly_over_processes() -> None:
    assert per_process_batch(16, 1) == 16
    # a fake 2-process run: each loads half, together one global batch
    shares = [per_process_batch(16, 2) for _rank in range(2)]
    assert shares == [8, 8] and sum(shares) == 16
    assert per_process_batch(24, 8) == 3


@pytest.mark.parametrize(("batch", "processes"), [(15, 2), (4, 8), (0, 1)])
def test_uneven_global_batch_is_an_error_naming_batch_size(batch: int, processes: int) -> None:
    with pytest.raises(ValueError, match=f"batch_size {batch} .* {processes} processes"):
        per_process_batch(batch, processes)


def test_gr1_sampler_with_the_split_batch_covers_the_global_batch() -> None:
    from integrations.gr1.train import StepBatchSampler

    global_batch, processes = 6, 2
    one = list(StepBatchSampler(20, per_process_batch(global_batch, 1), seed=1, start_step=0, total_steps=4))
    two = list(StepBatchSampler(20, per_process_batch(global_batch, processes), seed=1, start_step=0, total_steps=4, num_replicas=processes))
    assert [len(b) for b in two] == [3] * 8
    # step k: the two processes' batches together are the single process's batch
    assert [two[2 * k] + two[2 * k + 1] for k in range(4)] == one


# ---------------------------------------------------------------- TrainConfig
@pytest.mark.parametrize(
    ("field", "value"),
    [("lr_schedule", "linear"), ("warmup_steps", -1), ("log_every", 0), ("save_every", 0), ("num_workers", -1), ("grad_clip", -1.0)],
)
def test_train_config_rejects_bad_values_naming_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        TrainConfig(**{field: value})


# ---------------------------------------------------------------- config files and flags
def _write(path: Path, data: dict) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        import yaml

        path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_sets_fields_over_the_preset(tmp_path: Path, suffix: str) -> None:
    data = {
        "model": {"horizon": 7, "backbone": {"text_len": 4}},
        "train": {"lr": 2e-4, "warmup_steps": 3, "lr_schedule": "cosine", "mixed_precision": "bf16", "ema_decay": 0.5,
                  "ema_update_every": 7, "log_every": 2, "save_every": 9, "num_workers": 2, "steps": 40},
    }
    model, train = configs_from_command(TrainCommand(out=tmp_path, config=_write(tmp_path / f"run{suffix}", data)))
    assert model.horizon == 7 and model.backbone.text_len == 4
    assert model.dim == tiny_model_config().dim and model.backbone.kind == "tiny"  # the rest: the preset's
    assert (train.lr, train.warmup_steps, train.lr_schedule, train.mixed_precision) == (2e-4, 3, "cosine", "bf16")
    assert (train.ema_decay, train.ema_update_every, train.log_every, train.save_every, train.num_workers) == (0.5, 7, 2, 9, 2)
    assert train.batch_size == tiny_train_config().batch_size


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    import tyro

    path = _write(tmp_path / "run.json", {"train": {"lr": 2e-4, "warmup_steps": 3, "seed": 5}, "model": {"horizon": 7}})
    argv = ["--out", str(tmp_path), "--config", str(path), "--lr", "0.01", "--mixed-precision", "bf16", "--ema-update-every", "5",
            "--num-workers", "3", "--save-every", "11", "--horizon", "9"]
    model, train = configs_from_command(tyro.cli(TrainCommand, args=argv))
    assert (train.lr, train.mixed_precision, train.ema_update_every, train.num_workers, train.save_every) == (0.01, "bf16", 5, 3, 11)
    assert train.warmup_steps == 3 and train.seed == 5 and model.horizon == 9  # not given as flags: the file's (horizon: the flag's)


def test_a_written_run_config_reads_back_to_the_same_configs(tmp_path: Path) -> None:
    model = tiny_model_config(horizon=5, dim=64)
    train = tiny_train_config(lr=3e-4, lr_schedule="cosine", steps=77, save_every=10)
    path = write_run_config(tmp_path, "TrackShiftFlowPredictor", config_to_dict(model), config_to_dict(train))
    again_model, again_train = configs_from_command(TrainCommand(out=tmp_path, config=path))
    assert again_model == model and again_train == train


def test_bad_config_files_name_the_file_or_field(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_config_file(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown sections.*'optim'"):
        read_config_file(_write(tmp_path / "a.json", {"optim": {}}))
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match="b.json"):
        read_config_file(tmp_path / "b.json")
    with pytest.raises(ValueError, match="train config has unknown fields.*'learning_rate'"):
        configs_from_command(TrainCommand(out=tmp_path, config=_write(tmp_path / "c.json", {"train": {"learning_rate": 1.0}})))
    with pytest.raises(ValueError, match="'lr_schedule'"):
        configs_from_command(TrainCommand(out=tmp_path, config=_write(tmp_path / "d.yaml", {"train": {"lr_schedule": "step"}})))


def test_merge_combines_nested_sections() -> None:
    assert merge({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"d": 4}, "e": 5}) == {"a": 1, "b": {"c": 2, "d": 4}, "e": 5}


# ---------------------------------------------------------------- the run folder of each loop
def _scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, dict[int, float]] = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            found.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return found


def test_arfm_run_folder_layout_and_cosine_lr_in_the_logs(tmp_path: Path) -> None:
    from arfm.data.synthetic import MovingShapesDataset

    model_cfg = tiny_model_config(horizon=4, max_points=16, depth=2, dim=64)
    train_cfg = tiny_train_config(steps=4, batch_size=4, warmup_steps=2, lr_schedule="cosine", lr=1e-3, log_every=1, save_every=100, max_cond_frames=2)
    dataset = MovingShapesDataset(length=8, num_points=16, horizon=4, max_cond_frames=2)
    run_training(model_cfg, train_cfg, dataset, tmp_path / "run", show_progress=False)

    run = tmp_path / "run"
    assert {"config.json", "logs", "checkpoint"} <= {p.name for p in run.iterdir()}
    record = json.loads((run / "config.json").read_text())
    assert record["kind"] == "TrackShiftFlowPredictor" and record["train"] == dataclasses.asdict(train_cfg) and record["model"]["horizon"] == 4
    scalars = _scalars(run / "logs")
    assert sorted(scalars["train/loss"]) == [1, 2, 3, 4]
    # the rate after step s is lr * factor(s): one scheduler step per optimiser step
    f = lr_factor("cosine", 2, 4)
    assert [scalars["train/lr"][s] for s in (1, 2, 3, 4)] == pytest.approx([1e-3 * f(s) for s in (1, 2, 3, 4)], abs=1e-9)
    assert scalars["train/lr"][3] == pytest.approx(5e-4) and scalars["train/lr"][4] == pytest.approx(0.0, abs=1e-12)


def test_chois_run_folder_layout_ema_and_global_batch(tmp_path: Path) -> None:
    sys.path.insert(0, str(TESTS / "chois"))
    from test_chois_data import _write_fbm

    from integrations.chois.checkpointing import load_checkpoint, load_training_state
    from integrations.chois.train import TrainArgs, run_training as train_chois

    fbm = tmp_path / "fbm"
    fbm.mkdir()
    _write_fbm(fbm, subjects=(3, 4, 16), frames=60)
    out = tmp_path / "chois"
    ckpt, losses = train_chois(TrainArgs(data=fbm, out=out, steps=3, batch_size=2, log_every=1, save_every=10, ema_start=0, ema_update_every=1, ema_decay=0.5))
    assert len(losses) == 3 and ckpt == out / "checkpoint"
    record = json.loads((out / "config.json").read_text())
    assert record["kind"] == "ChoisModel" and record["train"]["batch_size"] == 2 and record["train"]["ema_decay"] == 0.5
    scalars = _scalars(out / "logs")
    assert sorted(scalars["train/loss"]) == [1, 2, 3] and "train/lr" in scalars and "train/l1" in scalars
    assert scalars["train/loss"][3] == pytest.approx(losses[2], rel=1e-5)
    assert (ckpt / "ema.safetensors").is_file()
    ema, online = load_checkpoint(ckpt), load_checkpoint(ckpt, use_ema=False)
    diffs = [not torch.equal(a, b) for a, b in zip(ema.state_dict().values(), online.state_dict().values()) if a.is_floating_point()]
    assert any(diffs), "with decay 0.5 from step 0 the EMA copy lags the weights"
    state = load_training_state(ckpt)
    assert int(state["ema"]["step"]) == 3 and "scheduler" in state
    # resuming restores the EMA: two more steps continue its count
    train_chois(TrainArgs(data=fbm, out=out, steps=5, batch_size=2, log_every=1, save_every=10, ema_start=0, ema_update_every=1, ema_decay=0.5, resume=True))
    assert int(load_training_state(ckpt)["ema"]["step"]) == 5
    with pytest.raises(ValueError, match="batch_size 0"):
        train_chois(TrainArgs(data=fbm, out=tmp_path / "bad", steps=1, batch_size=0))
