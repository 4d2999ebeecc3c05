"""Issue 15 parity: the ``task_set`` switch through generation, evaluation and experiments/table3.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tyro

from integrations.gr1.calvin_chains import validation_instructions
from integrations.gr1.evaluate import EvalArgs
from integrations.gr1.sim.calvin_format import CalvinEpisodeReader
from integrations.gr1.sim.calvin_task_set import CALVIN_TASKS, sample_calvin_chains
from integrations.gr1.sim.generate import GenerateConfig, generate

from tests.helpers import load_experiment


def _load_table3():
    return load_experiment("table3")


def test_generate_calvin_demos_carry_calvin_instructions(tmp_path):
    cfg = GenerateConfig(tmp_path / "split", episodes=1, seed=0, tasks_per_episode=1, num_points=8, task_set="calvin")
    stats = generate(cfg)
    chain = sample_calvin_chains(1, 0, 1)[0]
    assert stats["tasks_completed"] == stats["tasks_attempted"] == 1
    lang = np.load(tmp_path / "split" / "lang_annotations" / "auto_lang_ann.npy", allow_pickle=True).item()["language"]
    assert list(lang["task"]) == list(chain.tasks)
    assert list(lang["ann"]) == [validation_instructions()[t] for t in chain.tasks]
    first = CalvinEpisodeReader(tmp_path / "split").frame(0)
    np.testing.assert_allclose(first["scene_obs"][6:24], chain.scene_obs[6:24], atol=2e-3)
    with pytest.raises(ValueError, match="task_set"):
        GenerateConfig(tmp_path / "x", task_set="all")


def test_evaluate_flag_and_table3_fields():
    assert EvalArgs().task_set == "classic"
    assert tyro.cli(EvalArgs, args=["--task-set", "calvin"]).task_set == "calvin"
    table3 = _load_table3()
    assert table3.DemoSpec().task_set == table3.EvalSpec().task_set == "classic"
    for spec_cls in (table3.DemoSpec, table3.EvalSpec):
        with pytest.raises(ValueError, match="task_set"):
            spec_cls(task_set="calvin34")
    # Records of runs made before the field existed still match: the default is left out.
    demos = table3.DemoSpec()
    assert "task_set" not in table3._record(demos)
    assert table3._record(demos) == {k: v for k, v in dataclasses.asdict(demos).items() if k != "task_set"}
    assert table3._record(table3.EvalSpec(task_set="calvin"))["task_set"] == "calvin"
    assert set(CALVIN_TASKS) >= {"push_into_drawer", "place_in_slider"}
