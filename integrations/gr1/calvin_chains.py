"""CALVIN's long-horizon evaluation chains, start states and instructions (paper §4.4, Table 3).

What ``calvin_agent`` provides for the evaluation, without importing it (its dependencies do not
install on current Pythons):

- the 1000 official chains (:func:`load_chains`), shipped as package data
  (``calvin_data/eval_sequences_1000.json``, copied from CALVIN with its provenance). A run of
  ``N < 1000`` chains takes the first ``N``: calling CALVIN's ``get_sequences(N)`` would draw a
  different set, not comparable with the full protocol;
- the start state of a chain (:func:`initial_state_to_obs`): the symbolic initial state is
  resolved to ``robot_obs``/``scene_obs`` as CALVIN's ``get_env_state_for_initial_condition``
  does: a numpy ``RandomState`` seeded with the FNV-1 32 hash (seed 0, the ``pyhash`` variant) of
  ``str(initial_state.values())`` shuffles the two table slots and draws each block's yaw;
- the evaluation instruction of each subtask (:func:`validation_instructions`, the first entry of
  ``new_playtable_validation.yaml``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from integrations.gr1.sim.fnv import calvin_initial_condition_seed

DATA_DIR = Path(__file__).resolve().parent / "calvin_data"
CHAINS_FILE = DATA_DIR / "eval_sequences_1000.json"
TASKS_FILE = DATA_DIR / "new_playtable_tasks.yaml"
VALIDATION_FILE = DATA_DIR / "new_playtable_validation.yaml"
NUM_OFFICIAL_CHAINS = 1000

INITIAL_STATE_KEYS = ("led", "lightbulb", "slider", "drawer", "red_block", "blue_block", "pink_block", "grasped")
"""CALVIN's key order; the seed hashes the values in this order."""

# Facts of CALVIN's evaluation (calvin_agent/evaluation/utils.py @ fa03f01): the neutral robot state
# and where blocks go, in CALVIN's world frame (metres, radians).
CALVIN_START_ROBOT_OBS = np.array([
    0.02586889, -0.2313129, 0.5712808, 3.09045411, -0.02908596, 1.50013585, 0.07999963,
    -1.21779124, 1.03987629, 2.11978254, -2.34205014, -0.87015899, 1.64119093, 0.55344928, 1.0,
])
BLOCK_SLIDER_LEFT = np.array([-2.40851662e-01, 9.24044687e-02, 4.60990009e-01])
BLOCK_SLIDER_RIGHT = np.array([7.03416330e-02, 9.24044687e-02, 4.60990009e-01])
BLOCK_TABLE_SLOTS = (np.array([5.00000896e-02, -1.20000177e-01, 4.59990009e-01]),
                     np.array([2.29995412e-01, -1.19995140e-01, 4.59990010e-01]))
BLOCK_YAW_RANGE = (np.pi / 2 - np.pi / 8, np.pi / 2 + np.pi / 8)
SLIDER_LEFT_STATE, DRAWER_OPEN_STATE, SWITCH_ON_STATE = 0.28, 0.22, 0.088


@dataclass(frozen=True)
class CalvinChain:
    """One evaluation chain: CALVIN's symbolic initial state and its 5 subtasks."""

    initial_state: dict[str, Any]
    subtasks: tuple[str, ...]

    @property
    def seed(self) -> int:
        """The numpy seed CALVIN derives from the initial state (FNV-1 32 from 0)."""
        return calvin_initial_condition_seed(self.initial_state)


@lru_cache(maxsize=1)
def _official_chains() -> tuple[CalvinChain, ...]:
    if not CHAINS_FILE.is_file():
        raise FileNotFoundError(f"CALVIN chain file missing from the package: {CHAINS_FILE}")
    raw = json.loads(CHAINS_FILE.read_text())
    chains = []
    for i, entry in enumerate(raw):
        state, subtasks = entry["initial_state"], entry["subtasks"]
        if tuple(state) != INITIAL_STATE_KEYS or len(subtasks) != 5:
            raise ValueError(f"{CHAINS_FILE}: chain {i} is malformed (keys {list(state)}, {len(subtasks)} subtasks)")
        chains.append(CalvinChain(dict(state), tuple(subtasks)))
    return tuple(chains)


def load_chains(num_chains: int = NUM_OFFICIAL_CHAINS) -> list[CalvinChain]:
    """The first ``num_chains`` of CALVIN's 1000 official evaluation chains, in order.

    Raises:
        ValueError: ``num_chains`` outside ``[1, 1000]``.
    """
    if not 1 <= int(num_chains) <= NUM_OFFICIAL_CHAINS:
        raise ValueError(f"num_chains must lie in [1, {NUM_OFFICIAL_CHAINS}] (the official list), got {num_chains}")
    return list(_official_chains()[: int(num_chains)])


def _check_state(state: Mapping[str, Any]) -> None:
    if tuple(state) != INITIAL_STATE_KEYS:
        raise ValueError(f"initial_state must have CALVIN's keys in order {INITIAL_STATE_KEYS}, got {tuple(state)}")
    places = ("table", "slider_left", "slider_right")
    for color in ("red", "blue", "pink"):
        if state[f"{color}_block"] not in places:
            raise ValueError(f"initial_state[{color + '_block'!r}] must be one of {places}, got {state[f'{color}_block']!r}")
    if state["slider"] not in ("left", "right") or state["drawer"] not in ("open", "closed"):
        raise ValueError(f"initial_state: slider must be left/right and drawer open/closed, got {state['slider']!r}/{state['drawer']!r}")


def initial_state_to_obs(initial_state: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(robot_obs (15,), scene_obs (24,))`` of a symbolic initial state, as CALVIN resolves it.

    Block poses are in CALVIN's world frame; the order of the random draws (shuffle the two table
    slots, then one yaw per block: red, blue, pink) and CALVIN's slot rule (a blue block on the
    table takes the second slot when the red one is on the table too, else the first; a pink one
    always the second) are kept, so the poses equal CALVIN's for the same state.

    Args:
        initial_state: e.g. ``CalvinChain.initial_state`` (CALVIN's key order).
    """
    _check_state(initial_state)
    rng = np.random.RandomState(calvin_initial_condition_seed(initial_state))
    slots = list(BLOCK_TABLE_SLOTS)
    rng.shuffle(slots)
    scene = np.zeros(24)
    scene[0] = SLIDER_LEFT_STATE if initial_state["slider"] == "left" else 0.0
    scene[1] = DRAWER_OPEN_STATE if initial_state["drawer"] == "open" else 0.0
    scene[3] = SWITCH_ON_STATE if initial_state["lightbulb"] == 1 else 0.0
    scene[4], scene[5] = initial_state["lightbulb"], initial_state["led"]
    on_slider = {"slider_left": BLOCK_SLIDER_LEFT, "slider_right": BLOCK_SLIDER_RIGHT}
    table_slot = {"red": 0, "blue": 1 if initial_state["red_block"] == "table" else 0, "pink": 1}
    for i, color in enumerate(("red", "blue", "pink")):
        place = initial_state[f"{color}_block"]
        scene[6 + 6 * i: 9 + 6 * i] = on_slider[place] if place in on_slider else slots[table_slot[color]]
        scene[11 + 6 * i] = rng.uniform(*BLOCK_YAW_RANGE)
    return CALVIN_START_ROBOT_OBS.copy(), scene


@lru_cache(maxsize=1)
def validation_instructions() -> dict[str, str]:
    """``{subtask: instruction}``: the first instruction of each task in ``new_playtable_validation.yaml``."""
    if not VALIDATION_FILE.is_file():
        raise FileNotFoundError(f"CALVIN validation annotations missing from the package: {VALIDATION_FILE}")
    raw = yaml.safe_load(VALIDATION_FILE.read_text())
    return {task: str(texts[0]) for task, texts in raw.items()}
