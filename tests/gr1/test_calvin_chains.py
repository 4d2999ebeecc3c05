"""CALVIN's official chains, start-state seeding and instructions without calvin_agent (issue 15)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import SHARED  # noqa: E402

from integrations.gr1.calvin_chains import (  # noqa: E402
    BLOCK_SLIDER_LEFT, BLOCK_SLIDER_RIGHT, BLOCK_TABLE_SLOTS, CALVIN_START_ROBOT_OBS, CHAINS_FILE, initial_state_to_obs,
    load_chains, validation_instructions,
)

FIXTURES = SHARED / "fixtures" / "calvin"


def fnv1_32_from_zero(text: str) -> int:
    """FNV-1 32 written out again for the test: h = 0; per byte h = h * 16777619 mod 2^32, then xor."""
    h = 0
    for byte in text.encode("utf-8"):
        h = (h * 0x01000193) % (1 << 32)
        h ^= byte
    return h


@pytest.fixture(scope="module")
def official() -> list[dict]:
    path = FIXTURES / "eval_sequences_1000.json"
    if not path.is_file():
        pytest.skip(f"CALVIN fixtures not found at {path}")
    return json.loads(path.read_text())


def test_the_packaged_chains_equal_the_official_list_in_order(official: list[dict]) -> None:
    chains = load_chains(1000)
    assert len(chains) == 1000
    for chain, ref in zip(chains, official):
        assert chain.initial_state == ref["initial_state"]
        assert list(chain.initial_state) == list(ref["initial_state"])  # key order feeds the seed
        assert list(chain.subtasks) == ref["subtasks"]


def test_a_shorter_run_takes_the_prefix() -> None:
    assert load_chains(7) == load_chains(1000)[:7]
    assert load_chains(1)[0].subtasks == ("rotate_blue_block_right", "move_slider_right", "lift_red_block_slider",
                                          "place_in_slider", "turn_off_lightbulb")
    for bad in (0, 1001, -3):
        with pytest.raises(ValueError, match="num_chains"):
            load_chains(bad)


def test_the_package_copy_is_byte_identical_to_the_fixture() -> None:
    path = FIXTURES / "eval_sequences_1000.json"
    if not path.is_file():
        pytest.skip("CALVIN fixtures absent")
    assert CHAINS_FILE.read_bytes() == path.read_bytes()


def test_seeds_are_fnv1_32_from_zero_of_the_stringified_values() -> None:
    chains = load_chains(3)
    assert str(chains[0].initial_state.values()) == "dict_values([1, 1, 'left', 'open', 'slider_left', 'table', 'slider_right', 0])"
    for chain in chains:
        assert chain.seed == fnv1_32_from_zero(str(chain.initial_state.values()))
    # pinned values (FNV-1 from 0; the standard offset basis would give different numbers)
    assert [c.seed for c in chains] == [47886304, 3779255265, 467782966]
    assert fnv1_32_from_zero("hello world") == 2805756500  # pyhash's documented fnv1_32 example


def test_initial_state_resolution_follows_calvins_draws() -> None:
    chain = load_chains(1)[0]  # red on slider_left, blue on the table, pink on slider_right
    robot_obs, scene = initial_state_to_obs(chain.initial_state)
    np.testing.assert_array_equal(robot_obs, CALVIN_START_ROBOT_OBS)
    rng = np.random.RandomState(chain.seed)
    order = [0, 1]
    rng.shuffle(order)
    yaws = rng.uniform(np.pi / 2 - np.pi / 8, np.pi / 2 + np.pi / 8, size=3)
    np.testing.assert_allclose(scene[:6], [0.28, 0.22, 0.0, 0.088, 1.0, 1.0])
    np.testing.assert_allclose(scene[6:9], BLOCK_SLIDER_LEFT)
    np.testing.assert_allclose(scene[12:15], BLOCK_TABLE_SLOTS[order[0]])  # red is not on the table: first slot
    np.testing.assert_allclose(scene[18:21], BLOCK_SLIDER_RIGHT)
    np.testing.assert_allclose(scene[[11, 17, 23]], yaws)
    np.testing.assert_allclose(scene[[9, 10, 15, 16, 21, 22]], 0.0)


def test_blue_takes_the_second_table_slot_when_red_is_on_the_table() -> None:
    state = {"led": 0, "lightbulb": 0, "slider": "right", "drawer": "closed", "red_block": "table", "blue_block": "table",
             "pink_block": "slider_left", "grasped": 0}
    _, scene = initial_state_to_obs(state)
    rng = np.random.RandomState(fnv1_32_from_zero(str(state.values())))
    order = [0, 1]
    rng.shuffle(order)
    np.testing.assert_allclose(scene[6:9], BLOCK_TABLE_SLOTS[order[0]])
    np.testing.assert_allclose(scene[12:15], BLOCK_TABLE_SLOTS[order[1]])
    np.testing.assert_allclose(scene[:6], 0.0)
    with pytest.raises(ValueError, match="red_block"):
        initial_state_to_obs({**state, "red_block": "floor"})
    with pytest.raises(ValueError, match="keys"):
        initial_state_to_obs(dict(reversed(list(state.items()))))


def test_validation_instructions_are_calvins_first_entries() -> None:
    text = validation_instructions()
    assert len(text) == 34
    assert text["push_into_drawer"] == "slide the block that it falls into the drawer"
    assert text["lift_red_block_table"] == "grasp and lift the red block"
    path = FIXTURES / "new_playtable_validation.yaml"
    if path.is_file():
        assert text == {k: v[0] for k, v in yaml.safe_load(path.read_text()).items()}
    assert {t for c in load_chains(1000) for t in c.subtasks} <= set(text)
