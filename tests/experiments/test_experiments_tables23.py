"""experiments/table2.py and experiments/table3.py: configs, command-line overrides, aggregation over
seeds and the table layouts (no training here; the scripts' stages are exercised by their runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tyro

from tests.helpers import REPO, load_experiment




table2 = load_experiment("table2")
table3 = load_experiment("table3")


# ------------------------------------------------------------------ table 3 (GR-1)
def test_table3_shipped_config_loads_with_an_arfm_row_and_gr1_horizon() -> None:
    cfg = table3.Table3Config.from_json(REPO / "experiments" / "configs" / "table3.json")
    assert set(cfg.rows.values()) == {"none", "no-movement", "arfm:{ckpt:arfm}", "gt"}
    assert cfg.arfm.horizon == 15  # GR-1's 16 track positions = the current one + 15 predicted
    assert len(cfg.gr1.seeds) >= 2 and cfg.eval.num_chains >= 1


def test_table3_command_line_overrides_only_what_is_given(tmp_path: Path) -> None:
    cfg = table3.Table3Config.from_json(REPO / "experiments" / "configs" / "table3.json")
    cmd = tyro.cli(table3.Table3Command, args=["--num-chains", "1000", "--max-steps", "360", "--seeds", "4", "5", "--out", str(tmp_path)])
    new = table3.apply_overrides(cfg, cmd)
    assert (new.eval.num_chains, new.eval.max_steps, new.gr1.seeds, new.out) == (1000, 360, [4, 5], str(tmp_path))
    assert new.gr1.steps == cfg.gr1.steps and new.demos == cfg.demos and new.arfm == cfg.arfm and new.rows == cfg.rows


def test_table3_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'seeds'"):
        table3.Gr1Spec(seeds=[1, 1])
    with pytest.raises(ValueError, match="'labels'"):
        table3.ArfmSpec(labels="cotracker")
    with pytest.raises(ValueError, match="'episodes'"):
        table3.DemoSpec(episodes=0)
    with pytest.raises(ValueError, match="'rows'"):
        table3.Table3Config(rows={"a b": "none", "a-b": "gt"})  # same folder name
    bad = tmp_path / "t3.json"
    bad.write_text(json.dumps({"eval": {"num_chain": 5}}))
    with pytest.raises(ValueError, match="num_chain"):
        table3.Table3Config.from_json(bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        table3.Table3Config.from_json(tmp_path / "missing.json")
    with pytest.raises(SystemExit):  # a non-integer seed is refused by the parser
        tyro.cli(table3.Table3Command, args=["--seeds", "zero"])


def test_table3_aggregate_mean_and_sample_std_by_hand() -> None:
    per_seed = {0: {"success_rates": [0.5, 0.25, 0.0, 0.0, 0.0], "avg_len": 0.75, "num_chains": 4},
                1: {"success_rates": [1.0, 0.75, 0.5, 0.0, 0.0], "avg_len": 2.25, "num_chains": 4}}
    agg = table3.aggregate(per_seed)
    assert agg["success_mean"] == pytest.approx([0.75, 0.5, 0.25, 0.0, 0.0])
    assert agg["success_std"] == pytest.approx([math.sqrt(0.125), math.sqrt(0.125), math.sqrt(0.125), 0.0, 0.0])  # ddof=1
    assert (agg["avg_len_mean"], agg["avg_len_std"]) == pytest.approx((1.5, math.sqrt(1.125)))
    assert agg["seeds"] == [0, 1] and agg["num_chains"] == 4
    single = table3.aggregate({3: per_seed[0]})
    assert single["success_std"] == [0.0] * 5 and single["avg_len_std"] == 0.0
    with pytest.raises(ValueError, match="no seed"):
        table3.aggregate({})


def test_table3_markdown_layout() -> None:
    agg = table3.aggregate({0: {"success_rates": [0.5, 0.25, 0.0, 0.0, 0.0], "avg_len": 0.75, "num_chains": 4},
                            1: {"success_rates": [1.0, 0.75, 0.5, 0.0, 0.0], "avg_len": 2.25, "num_chains": 4}})
    text = table3.format_table("T3", {"GR-1 + GT": agg}, {"GR-1 + GT": "gt"})
    lines = text.splitlines()
    assert lines[0] == "### T3"
    assert lines[2] == "| Method | Tracks | Seeds | Chains | 1 | 2 | 3 | 4 | 5 | Avg. Len. |"
    assert lines[4] == "| GR-1 + GT | `gt` | 2 | 4 | 75.0 ± 35.4 | 50.0 ± 35.4 | 25.0 ± 35.4 | 0.0 ± 0.0 | 0.0 ± 0.0 | 1.50 ± 1.06 |"


def test_table3_slug_is_folder_safe() -> None:
    assert table3.slug("GR-1 + ARFM tracks (ours; tiny)") == "gr_1_arfm_tracks_ours_tiny"
    assert table3.slug("+++") == "row"


def test_table3_heldout_demos_use_other_scenes_and_new_fields_are_checked(tmp_path: Path) -> None:
    spec = table3.DemoSpec(episodes=40, seed=3, heldout_episodes=4)
    held = spec.heldout()
    assert (held.episodes, held.seed, held.heldout_episodes, held.num_points) == (4, 4, 0, spec.num_points)
    assert held.movement_weighted and spec.movement_weighted  # the sidecars' points favour moving bodies by default
    with pytest.raises(ValueError, match="'heldout_episodes'"):
        table3.DemoSpec(heldout_episodes=-1)
    with pytest.raises(ValueError, match="'track_dropout'"):
        table3.Gr1Spec(track_dropout=1.5)
    with pytest.raises(ValueError, match="'diagnostic_windows'"):
        table3.Gr1Spec(diagnostic_windows=-2)
    with pytest.raises(FileNotFoundError, match="not an ARFM checkpoint"):
        table3.ensure_arfm(table3.ArfmSpec(checkpoint=str(tmp_path)), tmp_path, tmp_path / "arfm")
    args = table3.gr1_args(table3.Gr1Spec(track_dropout=0.3), tmp_path, tmp_path / "run", 1, True)
    assert args.track_dropout == 0.3 and args.model_config().track_dropout == 0.3


def test_table3_pretrained_encoder_gripper_weight_and_ground_truth_mode(tmp_path: Path) -> None:
    spec = table3.Gr1Spec(pretrain_track_encoder_steps=300, gripper_loss_weight=10.0)
    encoder = tmp_path / "enc.safetensors"
    args = table3.gr1_args(spec, tmp_path, tmp_path / "run", 0, True, encoder)
    assert args.track_encoder_init == str(encoder) and args.model_config().gripper_loss_weight == 10.0
    plain = table3.gr1_args(spec, tmp_path, tmp_path / "plain", 0, False, encoder)
    assert plain.track_encoder_init is None  # a policy without tracks has no encoder to initialise
    assert table3.gr1_args(table3.Gr1Spec(), tmp_path, tmp_path / "run", 0, True).model_config().gripper_loss_weight == 1.0
    assert table3.ensure_track_encoder(table3.Gr1Spec(), tmp_path, encoder) == (None, 0.0)  # 0 steps: no stage
    with pytest.raises(ValueError, match="'gripper_loss_weight'"):
        table3.Gr1Spec(gripper_loss_weight=0.0)
    with pytest.raises(ValueError, match="'pretrain_track_encoder_steps'"):
        table3.Gr1Spec(pretrain_track_encoder_steps=-1)
    with pytest.raises(ValueError, match="'ground_truth_mode'"):
        table3.EvalSpec(ground_truth_mode="psychic")
    cfg = table3.Table3Config.from_json(REPO / "experiments" / "configs" / "table3_oracle_s5.json")
    assert cfg.eval.ground_truth_mode == "from_state" and cfg.gr1.pretrain_track_encoder_steps == 300


def test_table3_diagnostics_markdown() -> None:
    per_seed = {0: {"error_gt": 0.1, "error_none": 0.25, "change_gt_vs_none": 0.125},
                1: {"error_gt": 0.2, "error_none": 0.3, "error_plain": 0.28, "change_gt_vs_none": 0.05}}
    lines = table3.format_diagnostics(per_seed, "held-out demos").splitlines()
    assert "held-out demos" in lines[0]
    assert lines[2] == "| seed | error_gt | error_none | error_plain | change_gt_vs_none |"
    assert lines[4] == "| 0 | 0.1000 | 0.2500 | — | 0.1250 |"
    assert lines[5] == "| 1 | 0.2000 | 0.3000 | 0.2800 | 0.0500 |"


# ------------------------------------------------------------------ table 2 (CHOIS)
def test_table2_shipped_config_loads() -> None:
    cfg = table2.Table2Config.from_json(REPO / "experiments" / "configs" / "table2.json")
    assert set(cfg.rows.values()) == {"none", "no-movement", "arfm:{ckpt:arfm}", "gt"}
    assert cfg.chois.preset == "tiny" and len(cfg.chois.seeds) >= 2


def test_table2_overrides_and_errors(tmp_path: Path) -> None:
    cfg = table2.Table2Config.from_json(REPO / "experiments" / "configs" / "table2.json")
    cmd = tyro.cli(table2.Table2Command, args=["--chois-steps", "3000", "--max-windows", "7", "--seeds", "9"])
    new = table2.apply_overrides(cfg, cmd)
    assert (new.chois.steps, new.eval.max_windows, new.chois.seeds) == (3000, 7, [9])
    assert new.arfm == cfg.arfm and new.out == cfg.out
    with pytest.raises(ValueError, match="'preset'"):
        table2.ChoisSpec(preset="huge")
    with pytest.raises(ValueError, match="'camera_every'"):
        table2.ArfmSpec(camera_every=0)
    with pytest.raises(ValueError, match="'max_windows'"):
        table2.EvalSpec(max_windows=-1)
    bad = tmp_path / "t2.json"
    bad.write_text(json.dumps({"chois": {"step": 5}}))
    with pytest.raises(ValueError, match="step"):
        table2.Table2Config.from_json(bad)


def test_table2_aggregate_keeps_skipped_metrics_and_formats_units() -> None:
    from integrations.chois.metrics import TABLE2_COLUMNS, UNITS

    def result(offset: float) -> dict:
        row = {c: 1.0 + offset for c in TABLE2_COLUMNS}
        row["R_prec"] = row["FID"] = "skipped"
        return row

    agg = table2.aggregate({0: result(0.0), 1: result(2.0)})
    assert agg["mean"]["T_s"] == pytest.approx(2.0) and agg["std"]["T_s"] == pytest.approx(math.sqrt(2.0))
    assert agg["mean"]["FID"] == "skipped"
    text = table2.format_table("T2", "proxy-skeleton", {"CHOIS + GT": agg}, {"CHOIS + GT": "gt"})
    lines = text.splitlines()
    assert lines[2] == "Body model: proxy-skeleton"
    assert f"T_s ({UNITS['T_s']})" in lines[4] and f"MPJPE ({UNITS['MPJPE']})" in lines[4]
    cells = [c.strip() for c in lines[6].strip("|").split("|")]
    assert cells[:3] == ["CHOIS + GT", "`gt`", "2"]
    assert cells[3:] == ["skipped" if c in ("R_prec", "FID") else "2.000 ± 1.414" for c in TABLE2_COLUMNS]


def test_merge_timings_keeps_the_time_of_reused_stages(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    assert table3.merge_timings(path, {"demos": 169.0, "train": 70.0}) == {"demos": 169.0, "train": 70.0}
    assert table2.merge_timings(path, {"demos": 0.0, "train": 0.0, "eval": 12.0}) == {"demos": 169.0, "train": 70.0, "eval": 12.0}
    assert table3.merge_timings(path, {"train": 65.0, "new": 0.0}) == {"train": 65.0, "new": 0.0}
    assert json.loads(path.read_text()) == {"demos": 169.0, "train": 65.0, "eval": 12.0, "new": 0.0}


def test_table2_track_ade_by_hand() -> None:
    import torch

    from arfm.predictors import build_predictor

    # two points over 2 future steps: point 0 moves +3 px in x per step, point 1 stays; point 1 hidden at step 2
    tracks = torch.tensor([[[10.0, 10.0], [13.0, 10.0], [16.0, 10.0]], [[50.0, 50.0], [50.0, 50.0], [50.0, 50.0]]])
    visible = torch.tensor([[True, True, True], [True, True, False]])
    item = {"tracks": tracks, "track_visible": visible, "frame0": torch.zeros(3, 256, 256), "caption": "push"}
    windows = [item, item]
    # no-movement errors on the 3 visible future positions: 3, 6, 0 -> mean 3
    assert table2.track_ade(windows, build_predictor("no-movement"), 2, 0, 0) == pytest.approx(3.0)
    assert table2.track_ade(windows, build_predictor("gt"), 2, 1, 0) == pytest.approx(0.0)
    assert table2.track_ade(windows, build_predictor("none"), 2, 0, 0) is None
