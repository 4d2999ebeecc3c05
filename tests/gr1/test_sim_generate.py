"""The dataset CLI writes expert demonstrations in CALVIN's format with track sidecars."""

import json

import numpy as np
import pytest

from integrations.gr1.sim.calvin_format import CalvinEpisodeReader
from integrations.gr1.sim.generate import GenerateConfig, main
from integrations.gr1.sim.tabletop_env import relative_to_absolute
from integrations.gr1.sim.tasks import TASKS


def test_generate_one_episode(tmp_path, capsys):
    out = tmp_path / "training"
    main(["--out", str(out), "--episodes", "1", "--seed", "3", "--tasks-per-episode", "1", "--num-points", "32"])
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["tasks_completed"] == stats["tasks_attempted"] == 1
    reader = CalvinEpisodeReader(out)
    (start, end, task, instruction), = reader.annotations()
    assert reader.episode_ids.tolist() == [[start, end]] and len(reader) == stats["frames"] == end - start + 1
    assert instruction == TASKS[task].instruction
    side = reader.tracks(start, end)
    assert side["tracks"].shape == (32, end - start + 1, 2) and side["visible"].shape == (32, end - start + 1)
    assert side["visible"][:, 0].all()
    # Expert frames: the relative action reproduces the absolute one from the frame's robot_obs.
    frame = reader.frame(start + 5)
    assert np.allclose(relative_to_absolute(frame["rel_actions"], frame["robot_obs"])[:3], frame["actions"][:3], atol=1e-9)
    assert frame["rgb_static"].shape == (200, 200, 3) and frame["depth_gripper"].shape == (84, 84)
    # Tracks of frame t are where the sampled points are in that frame's image.
    assert np.all((side["tracks"] >= -50) & (side["tracks"] <= 250))
    assert json.loads((out / "generate_stats.json").read_text())["frames"] == stats["frames"]


def test_config_validation(tmp_path):
    tiny = GenerateConfig.tiny(tmp_path)
    assert (tiny.episodes, tiny.tasks_per_episode, tiny.num_points) == (2, 1, 32)
    with pytest.raises(ValueError, match="episodes"):
        GenerateConfig(tmp_path, episodes=0)
    with pytest.raises(ValueError, match="tasks_per_episode"):
        GenerateConfig(tmp_path, tasks_per_episode=0)
    with pytest.raises(ValueError, match="num_points"):
        GenerateConfig(tmp_path, num_points=-1)
