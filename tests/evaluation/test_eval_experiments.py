"""The table scripts of experiments/ run end to end (tiny training, evaluation, rows not runnable here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_drifting_clips

REPO = Path(__file__).resolve().parents[2]


def _labelled(root: Path) -> None:
    """Three 60-frame clips whose 40 tracks drift by a few pixels per frame."""
    write_drifting_clips(root, clips=3, frames=60, tracks=40)


@pytest.mark.parametrize("script", ["table1.py", "table5.py"])
def test_config_files_are_valid(script: str) -> None:
    config = json.loads((REPO / "experiments" / "configs" / script.replace(".py", ".json")).read_text())
    assert config["eval"]["horizon"] == 50 and config["eval"]["num_points"] == 100 and config["eval"]["min_movement"] == 50.0
    for template in config["rows"].values():
        if "{ckpt:" in template:
            assert template.split("{ckpt:")[1].rstrip("}") in config["train"]


def test_table_script_trains_evaluates_and_lists_rows_it_cannot_run(tmp_path: Path) -> None:
    _labelled(tmp_path / "data")
    config = {
        "title": "smoke",
        "rows": {"No movement": "no-movement", "Chronos Relative": "chronos-relative:{dir:chronos}", "regression": "regression:{ckpt:reg}"},
        "train": {"reg": {"objective": "regression", "steps": 1, "horizon": 4, "num_points": 8, "batch_size": 2}},
        "dirs": {"chronos": ""},
        "eval": {"horizon": 20, "num_points": 10, "min_movement": 0.0, "k_values": [1, 2, 5], "num_qualitative": 1},
        "runs_dir": str(tmp_path / "runs"),
        "out": str(tmp_path / "out"),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(REPO / "experiments" / "table1.py"), "--data", str(tmp_path / "data"), "--config", str(tmp_path / "config.json")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| No movement |" in table and "| regression |" in table
    assert "Chronos Relative: `chronos-relative:{dir:chronos}` — **not run**" in table
    assert (tmp_path / "runs" / "reg" / "checkpoint" / "config.json").is_file()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["clip_ids"] == ["clip0", "clip1", "clip2"]
    assert json.loads((tmp_path / "runs" / "reg" / "train_spec.json").read_text())["steps"] == 1  # what a rerun compares to reuse it
