"""Table runs that fine-tune a checkpoint (``TrainSpec.init``, issue 13) and the real-clip sim config."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import table1  # noqa: E402

from tests.helpers import write_drifting_clips  # noqa: E402

SMALL = {"horizon": 4, "num_points": 8, "batch_size": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Two 20-frame clips whose 12 tracks drift by a few pixels per frame."""
    return write_drifting_clips(tmp_path_factory.mktemp("data"), clips=2, frames=20, tracks=12)


@pytest.fixture(scope="module")
def base(data: Path, tmp_path_factory) -> Path:
    """A one-step tiny checkpoint (seed 1) to fine-tune from."""
    ckpt, _ = table1.train_run("base", table1.TrainSpec(steps=1, seed=1, **SMALL), data, tmp_path_factory.mktemp("base"), retrain=False)
    return ckpt


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fine_tune_starts_from_the_init_weights(data: Path, base: Path, tmp_path: Path, monkeypatch) -> None:
    import arfm.train
    from arfm.checkpoint import load_model, load_weights

    started_from = {}
    real_fit = arfm.train.fit

    def spy_fit(build_model, *args, **kwargs):
        started_from.update(_weights(build_model()))  # what the loop's step 0 sees
        return real_fit(build_model, *args, **kwargs)

    def no_fresh_model(*args, **kwargs):
        raise AssertionError("a run with init must not build a fresh model through run_training")

    monkeypatch.setattr(arfm.train, "fit", spy_fit)
    monkeypatch.setattr(arfm.train, "run_training", no_fresh_model)
    ckpt, seconds = table1.train_run("ft", table1.TrainSpec(steps=2, seed=0, init=str(base), **SMALL), data, tmp_path, retrain=False)

    init_model = load_model(base)
    init = _weights(init_model)
    assert started_from.keys() == init.keys()
    for name, value in init.items():
        torch.testing.assert_close(started_from[name], value, rtol=0, atol=0, msg=name)
    assert seconds > 0 and json.loads((ckpt / "config.json").read_text())["step"] == 2
    # Two warm-up steps move the weights a little; a fresh initialisation is far from them.
    tuned = _weights(load_weights(load_model(base), ckpt, use_ema=False))
    torch.manual_seed(123)
    fresh = _weights(type(init_model)(init_model.config))
    moved = max((tuned[k] - init[k]).abs().max().item() for k in init if init[k].is_floating_point())
    far = max((fresh[k] - init[k]).abs().max().item() for k in init if init[k].is_floating_point())
    assert 0 < moved < far / 10


def test_record_names_the_init_and_retrains_when_it_changes(data: Path, base: Path, tmp_path: Path) -> None:
    plain = table1.train_record(table1.TrainSpec(steps=2, **SMALL), data)
    assert "init" not in plain and "init_sha256" not in plain  # records written before the field still match

    spec = table1.TrainSpec(steps=1, seed=0, init=str(base), **SMALL)
    record = table1.train_record(spec, data)
    assert record["init"] == str(base.resolve()) and len(record["init_sha256"]) == 64
    assert {k: v for k, v in record.items() if k not in ("init", "init_sha256")} == {**plain, "steps": 1}

    runs = tmp_path / "runs"
    _, first = table1.train_run("ft", spec, data, runs, retrain=False)
    assert json.loads((runs / "ft" / "train_spec.json").read_text()) == record
    assert table1.train_run("ft", spec, data, runs, retrain=False)[1] == 0.0  # same init: reused

    # The same folder with other weights (a checkpoint retrained in place) is another init.
    other = tmp_path / "other"
    shutil.copytree(base, other)
    moved_spec = table1.TrainSpec(steps=1, seed=0, init=str(other), **SMALL)
    same_weights = table1.train_record(moved_spec, data)
    assert same_weights["init_sha256"] == record["init_sha256"] and same_weights["init"] != record["init"]
    shutil.copy(runs / "ft" / "checkpoint" / "ema.safetensors", other / "ema.safetensors")
    assert table1.train_record(moved_spec, data)["init_sha256"] != record["init_sha256"]
    _, again = table1.train_run("ft", moved_spec, data, runs, retrain=False)
    assert first > 0 and again > 0
    assert json.loads((runs / "ft" / "train_spec.json").read_text())["init"] == str(other.resolve())


@pytest.mark.parametrize(("field", "value", "says"), [("num_points", 16, "max_points=8"), ("horizon", 6, "horizon=4"), ("objective", "regression", "objective='flow'")])
def test_init_that_does_not_fit_the_spec_is_an_error_naming_the_field(data: Path, base: Path, tmp_path: Path, field: str, value, says: str) -> None:
    spec = table1.TrainSpec(steps=1, init=str(base), **{**SMALL, field: value})
    with pytest.raises(ValueError, match=rf"TrainSpec field '{field}'.*{says}"):
        table1.train_run("ft", spec, data, tmp_path, retrain=False)
    assert not (tmp_path / "ft").exists()


def test_missing_or_empty_init_is_an_error(data: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="field 'init'.*nowhere"):
        table1.train_run("ft", table1.TrainSpec(steps=1, init=str(tmp_path / "nowhere"), **SMALL), data, tmp_path, retrain=False)
    with pytest.raises(ValueError, match="field 'init'"):
        table1.TrainSpec(init=" ")


def test_real_sim_config_shares_the_600_step_run_and_fits_the_sim_checkpoint() -> None:
    cfg = table1.TableConfig.from_json(REPO / "experiments" / "configs" / "table1_real_sim.json")
    base_cfg = json.loads((REPO / "experiments" / "configs" / "table1.json").read_text())
    # The real-only row is the 600-step Table 1 run (`table1.py --steps 600`): same name, spec and folder.
    assert table1.TrainSpec(**{**base_cfg["train"]["flow"], "steps": 600}) == cfg.train["flow"]
    assert cfg.runs_dir == base_cfg["runs_dir"] and cfg.eval == base_cfg["eval"]
    assert cfg.rows["No movement"] == "no-movement" and "arfm:checkpoints/tiny-sim" in cfg.rows.values()
    tuned = cfg.train["sim_real_ft"]
    assert tuned.init == "checkpoints/tiny-sim" and tuned.split == "train" and tuned.steps == 600
    model_cfg = table1._init_model_config("sim_real_ft", tuned, table1._resolve(tuned.init))  # raises on a mismatch
    assert model_cfg.max_points == tuned.num_points
