"""experiments/table2.py end to end on a tiny FullBodyManipulation-format folder: every stage runs
(ARFM export and training, track-encoder pre-training, CHOIS, the four rows, the sensitivity check)
and a body walking out of the camera's view still makes valid ARFM clips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from tests.helpers import REPO, load_experiment

sys.path.insert(0, str(REPO / "tests" / "chois"))
from test_chois_data import _write_fbm  # noqa: E402

table2 = load_experiment("table2")


@pytest.fixture(scope="module")
def walking_away(tmp_path_factory) -> Path:
    """Two training sequences (one walks 30 m away from where its window cameras stand), one test sequence."""
    root = tmp_path_factory.mktemp("fbm_walk")
    _write_fbm(root, subjects=(3, 4, 16), frames=90)
    path = root / "train_diffusion_manip_seq_joints24.p"
    seqs = joblib.load(path)
    seqs[0]["trans"][:, 0] = np.linspace(0.0, -30.0, len(seqs[0]["trans"]))
    joblib.dump(seqs, path)
    return root


def test_export_keeps_points_far_out_of_view_in_the_range_a_clip_may_hold(walking_away: Path, tmp_path: Path) -> None:
    from arfm.data.dataset import TRACK_RANGE, clip_problem, open_labelled_dataset
    from integrations.chois.configuration_chois import tiny_chois_config

    count = table2.export_track_clips(walking_away, tiny_chois_config(), tmp_path / "labelled", camera_every=40)
    store = open_labelled_dataset(tmp_path / "labelled")
    assert count == len(store.entries) == 4
    extremes = []
    for key in range(len(store.entries)):
        arrays = store.open_arrays(key)
        assert clip_problem(arrays) is None, store.clip_dir(key)
        tracks, visible = np.asarray(arrays["tracks"], np.float32), np.asarray(arrays["visible"])
        extremes += [tracks.min(), tracks.max()]
        edge = (tracks <= TRACK_RANGE[0]) | (tracks >= TRACK_RANGE[1])
        assert not (edge.any(-1) & visible).any()  # only points out of view are held at the edge
    assert min(extremes) <= TRACK_RANGE[0] or max(extremes) >= TRACK_RANGE[1]  # the walk did leave the view


def test_table2_runs_every_stage_on_tiny_data(walking_away: Path, tmp_path: Path) -> None:
    config = {
        "title": "tiny", "data": str(walking_away), "out": str(tmp_path / "run"),
        "chois": {"steps": 2, "batch_size": 2, "seeds": [0], "pretrain_track_encoder_steps": 2},
        "arfm": {"steps": 2, "num_points": 8, "batch_size": 2, "camera_every": 40},
        "eval": {"max_windows": 2},
    }  # fmt: skip
    path = tmp_path / "table2.json"
    path.write_text(json.dumps(config))
    markdown = table2.main(["--config", str(path)])
    saved = json.loads((tmp_path / "run" / "table2.json").read_text())
    assert set(saved["rows"]) == set(table2.Table2Config().rows) and saved["test_windows"] == 2
    assert (tmp_path / "run" / "track_encoder_pretrained.safetensors").is_file()
    sensitivity = saved["track_sensitivity"]["0"]
    assert set(sensitivity) >= {"error_gt", "error_none", "change_gt_vs_none"} and sensitivity["change_gt_vs_none"] >= 0
    assert "Does CHOIS use its tracks?" in markdown.read_text()
    record = json.loads((tmp_path / "run" / "chois_seed0" / "table2_train_args.json").read_text())
    assert record["track_encoder_init"].endswith("track_encoder_pretrained.safetensors")
    with pytest.raises(ValueError, match="'pretrain_track_encoder_steps'"):
        table2.ChoisSpec(pretrain_track_encoder_steps=-1)
    assert table2.format_sensitivity({}).startswith("Track sensitivity: not measured")
