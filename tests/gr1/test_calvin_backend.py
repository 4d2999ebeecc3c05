"""The real-CALVIN backend without calvin_agent: early errors, seed, official chains, quiet close (issue 15).

``calvin_env`` is not installed here: a stand-in module with the same entry points (a
``PlayTableSimEnv`` instantiated by hydra from the dataset's ``merged_config.yaml``, whose
``close`` prints and whose ``__del__`` closes again) checks the backend's own logic. The last
test runs against the real ``calvin_env`` and skips when it is absent.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pybullet
import pytest

from integrations.gr1.calvin_chains import initial_state_to_obs, load_chains, validation_instructions
from integrations.gr1.eval_backends import RealCalvinBackend, check_backend, make_backend

CREATED: list["FakePlayTableSimEnv"] = []


class FakePlayTableSimEnv:
    """Mimics calvin_env's PlayTableSimEnv where it matters: the seed argument, close() printing and
    raising pybullet.error once disconnected, __del__ calling close() again."""

    def __init__(self, seed: int, show_gui: bool, use_vr: bool, use_scene_info: bool, **kwargs) -> None:
        self.seed, self.show_gui, self.use_scene_info, self.connected = seed, show_gui, use_scene_info, True
        self.resets: list[tuple] = []
        CREATED.append(self)

    def reset(self, robot_obs=None, scene_obs=None) -> dict:
        self.resets.append((robot_obs, scene_obs))
        return {}

    def close(self) -> None:
        print("disconnecting id 0 from server")
        if not self.connected:
            raise pybullet.error("Not connected to physics server.")
        self.connected = False

    def __del__(self) -> None:
        self.close()


@pytest.fixture
def fake_calvin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``calvin_env`` importable as the real one, and a split root with a validation config."""
    pkg = types.ModuleType("calvin_env")
    envs = types.ModuleType("calvin_env.envs")
    table = types.ModuleType("calvin_env.envs.play_table_env")
    table.PlayTableSimEnv = FakePlayTableSimEnv
    pkg.envs, envs.play_table_env = envs, table
    for name, mod in (("calvin_env", pkg), ("calvin_env.envs", envs), ("calvin_env.envs.play_table_env", table)):
        monkeypatch.setitem(sys.modules, name, mod)
    hydra_dir = tmp_path / "task_D_D" / "validation" / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "merged_config.yaml").write_text(
        "env:\n  _target_: calvin_env.envs.play_table_env.PlayTableSimEnv\n  seed: 0\n  show_gui: true\n  use_vr: false\n"
        "  use_scene_info: false\n")
    CREATED.clear()
    return tmp_path / "task_D_D"


def test_missing_calvin_env_fails_before_anything_is_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "calvin_env", None)  # import calvin_env -> ImportError
    with pytest.raises(ImportError, match="calvin_env.git"):
        check_backend("calvin", tmp_path)
    with pytest.raises(ImportError, match="calvin_agent is not needed"):
        make_backend("calvin", str(tmp_path))
    with pytest.raises(ValueError, match="unknown evaluation env 'mujoco'"):
        check_backend("mujoco")


def test_missing_dataset_is_named(fake_calvin: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--calvin-dataset is required"):
        check_backend("calvin", None)
    with pytest.raises(FileNotFoundError, match="merged_config.yaml"):
        make_backend("calvin", str(fake_calvin.parent / "elsewhere"))
    assert CREATED == []


def test_seed_reaches_the_env_and_chains_are_the_official_prefix(fake_calvin: Path) -> None:
    backend = make_backend("calvin", str(fake_calvin), seed=7)
    env = CREATED[-1]
    assert (env.seed, env.show_gui, env.use_scene_info) == (7, False, True)
    chains = backend.sample_chains(3, seed=123)
    official = load_chains(3)
    assert [c.tasks for c in chains] == [c.subtasks for c in official]
    assert chains[0].instructions[0] == validation_instructions()["rotate_blue_block_right"] == \
        "take the blue block and rotate it to the right"
    robot_obs, scene_obs = initial_state_to_obs(official[1].initial_state)
    np.testing.assert_array_equal(chains[1].scene_obs, scene_obs)
    backend.reset(chains[1])
    np.testing.assert_array_equal(env.resets[-1][0], robot_obs)
    backend.close()


def test_close_is_quiet_and_idempotent(fake_calvin: Path, capsys: pytest.CaptureFixture) -> None:
    backend = RealCalvinBackend(str(fake_calvin))
    env = CREATED[-1]
    backend.close()
    backend.close()
    assert not env.connected
    del env, backend
    CREATED.clear()
    gc.collect()  # the fake's __del__ runs close() again, as calvin_env's does
    captured = capsys.readouterr()
    assert captured.out == "" and "Not connected" not in captured.err


@pytest.mark.skipif(importlib.util.find_spec("calvin_env") is None, reason="calvin_env is not installed")
def test_real_calvin_env_runs_a_chain_start(tmp_path: Path) -> None:
    import os

    root = os.environ.get("CALVIN_DATASET")
    if root is None:
        pytest.skip("set CALVIN_DATASET to a CALVIN split root to run against the real env")
    backend = make_backend("calvin", root, seed=0)
    try:
        chain = backend.sample_chains(1, 0)[0]
        obs = backend.reset(chain)
        assert obs["rgb_obs"]["rgb_static"].shape == (200, 200, 3)
        start = backend.info()
        obs = backend.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
        assert not backend.completed(chain.tasks[0], start, backend.info())
    finally:
        backend.close()
