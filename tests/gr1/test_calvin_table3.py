"""experiments/table3.py --env calvin: CALVIN's protocol, the same rows, early errors (issue 15)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tyro

from tests.helpers import REPO, load_experiment


def _load_table3():
    return load_experiment("table3")


table3 = _load_table3()
CONFIG = REPO / "experiments" / "configs" / "table3.json"


def overrides(*argv: str):
    cmd = tyro.cli(table3.Table3Command, args=list(argv))
    return table3.apply_overrides(table3.Table3Config.from_json(CONFIG), cmd)


def test_calvin_env_takes_the_official_protocol_and_the_same_rows(tmp_path: Path) -> None:
    embedded = overrides()
    cfg = overrides("--env", "calvin", "--calvin-dataset", str(tmp_path))
    assert (cfg.eval.env, cfg.eval.calvin_dataset) == ("calvin", str(tmp_path))
    assert (cfg.eval.num_chains, cfg.eval.max_steps) == (1000, 360)
    assert cfg.arfm.labels == "lk"  # no simulator tracks on real data
    assert cfg.rows == {k: v for k, v in embedded.rows.items() if v != "gt"}  # no ground truth in the real env
    assert {"none", "no-movement"} <= set(cfg.rows.values()) and any(v.startswith("arfm:") for v in cfg.rows.values())
    short = overrides("--env", "calvin", "--calvin-dataset", str(tmp_path), "--num-chains", "5")
    assert (short.eval.num_chains, short.eval.max_steps) == (5, 360)
    assert embedded.eval.env == "embedded" and embedded.eval.num_chains != 1000


def test_calvin_env_needs_a_dataset_and_calvin_env_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="calvin_dataset"):
        overrides("--env", "calvin")
    monkeypatch.setitem(sys.modules, "calvin_env", None)
    out = tmp_path / "run"
    with pytest.raises(ImportError, match="calvin_env"):
        table3.main(["--env", "calvin", "--calvin-dataset", str(tmp_path), "--out", str(out)])
    assert not out.exists()  # nothing was generated or trained
