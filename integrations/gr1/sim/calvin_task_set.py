"""CALVIN's 34 tasks on the embedded tabletop (issue 15, ``task_set="calvin"``).

With ``task_set="calvin"`` the tabletop runs the same chains as the real CALVIN env:

- :data:`CALVIN_TASKS`: the 25 tasks of :data:`integrations.gr1.sim.tasks.TASKS` plus the 9 that
  need the cabinet plank and the open drawer (:data:`CALVIN_ONLY_TASKS`), every one with CALVIN's
  evaluation instruction (the first entry of ``new_playtable_validation.yaml``);
  :func:`get_calvin_task_info` is the simulator's own oracle for them, with the conditions of
  CALVIN's (``lift_object`` / ``place_object`` / ``push_object_into``) read from ``block_contacts``.
- Symbolic chain state: :class:`integrations.gr1.sim.tasks.SymbolicState` with ``places`` (blocks
  on the plank's halves or in the drawer); :func:`feasible_calvin_tasks` / :func:`apply_calvin_task`
  extend the classic rules: a block on the plank can be lifted from the half the sliding door has
  left (CALVIN: ``slider_left`` needs the door on the right), a held block can be put on the free
  open half (``place_in_slider``) or into the open drawer with room (``place_in_drawer``; the drawer
  holds two blocks, as each half of the plank), a block in the open drawer can be lifted out, and
  ``push_into_drawer`` pushes the table block :func:`drawer_push_block` picks into the open drawer.
- :func:`sample_calvin_chains`: chains from CALVIN-style start states (:func:`sample_calvin_scene_obs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Collection

import numpy as np
import yaml

from integrations.gr1.sim.calvin_fixtures import (
    DRAWER_SLOTS_Y, DRAWER_X, block_place, random_initial_state, realise_initial_state,
)
from integrations.gr1.sim.scene import SWITCH_ON_ABOVE
from integrations.gr1.sim.tasks import (
    _CALVIN_VALIDATION, COLORS, TASKS, SymbolicState, Task, TaskChain, apply_task, feasible_tasks,
)

Info = dict[str, Any]
CALVIN_ONLY_TASKS = tuple(f"lift_{c}_block_{p}" for c in COLORS for p in ("slider", "drawer")) + (
    "place_in_slider", "place_in_drawer", "push_into_drawer")
"""The 9 CALVIN tasks the classic scene cannot host."""
LANE_TOLERANCE = 0.01
"""A table block this close (m, along y) to the free drawer slot's ``y`` is pushed straight into the drawer."""
CAPACITY = 2
"""Blocks each half of the plank and the drawer hold (:mod:`integrations.gr1.sim.calvin_fixtures`)."""


def _contacts(info: Info, color: str) -> set[str]:
    return set(info.get("block_contacts", {}).get(color, set()))


def _z(info: Info, color: str) -> float:
    return float(np.asarray(info["scene_obs"], dtype=np.float64)[8 + 6 * COLORS.index(color)])


def _lifted_from(color: str, surface: str, height: float) -> Callable[[Info, Info], bool]:
    """CALVIN's ``lift_object``: resting on ``surface`` untouched, then raised by ``height`` held only by the robot."""
    def check(s: Info, e: Info) -> bool:
        start = _contacts(s, color)
        return bool(surface in start and "robot" not in start and _contacts(e, color) == {"robot"}
                    and _z(e, color) - _z(s, color) > height)
    return check


def _lifted_from_table(color: str) -> Callable[[Info, Info], bool]:
    """The classic table lift, not from the drawer (whose floor is flush with the table)."""
    classic = TASKS[f"lift_{color}_block_table"].check
    return lambda s, e: bool("drawer" not in _contacts(s, color) and classic(s, e))


def _placed_on(surface: str) -> Callable[[Info, Info], bool]:
    """CALVIN's ``place_object``: the block held alone at the start rests, released, on ``surface``."""
    def check(s: Info, e: Info) -> bool:
        held = [c for c in COLORS if _contacts(s, c) == {"robot"}]
        return len(held) == 1 and surface in _contacts(e, held[0]) and "robot" not in _contacts(e, held[0])
    return check


def _pushed_into_drawer(s: Info, e: Info) -> bool:
    """CALVIN's ``push_object_into``: a block resting only on the table ends in the drawer, untouched by the robot."""
    return any(_contacts(s, c) == {"table"} and "drawer" in _contacts(e, c) and "robot" not in _contacts(e, c)
               for c in COLORS)


def _make_calvin_tasks() -> dict[str, Task]:
    checks: dict[str, Callable[[Info, Info], bool]] = {name: task.check for name, task in TASKS.items()}
    for color in COLORS:
        checks[f"lift_{color}_block_table"] = _lifted_from_table(color)
        checks[f"lift_{color}_block_slider"] = _lifted_from(color, "plank", 0.03)  # CALVIN's thresholds
        checks[f"lift_{color}_block_drawer"] = _lifted_from(color, "drawer", 0.05)
    checks.update(place_in_slider=_placed_on("plank"), place_in_drawer=_placed_on("drawer"),
                  push_into_drawer=_pushed_into_drawer)
    # The file of calvin_chains.validation_instructions, read here: importing calvin_chains from
    # this package at import time would be circular (it imports sim.fnv).
    text = {k: str(v[0]) for k, v in yaml.safe_load(_CALVIN_VALIDATION.read_text()).items()}
    if set(text) != set(checks):
        raise ValueError(f"CALVIN's validation tasks {sorted(set(text) ^ set(checks))} do not match the embedded ones")
    return {name: Task(name, text[name], checks[name]) for name in text}


CALVIN_TASKS: dict[str, Task] = _make_calvin_tasks()
"""CALVIN's 34 tasks by name (in ``new_playtable_validation.yaml``'s order), with its instructions."""


def get_calvin_task_info(start_info: Info, end_info: Info) -> set[str]:
    """Names of the :data:`CALVIN_TASKS` completed between two ``env.get_info()`` snapshots."""
    for name, info in (("start_info", start_info), ("end_info", end_info)):
        if "scene_obs" not in info or np.asarray(info["scene_obs"]).shape != (24,):
            raise ValueError(f"{name} must hold a (24,) 'scene_obs' (from CalvinTabletopEnv.get_info())")
    return {name for name, task in CALVIN_TASKS.items() if task.check(start_info, end_info)}


# ---------------------------------------------------------------------- symbolic state
def calvin_symbolic_state(scene_obs: np.ndarray) -> SymbolicState:
    """The symbolic state of a calvin-mode ``scene_obs``: table blocks by position, the others in ``places``."""
    s = np.asarray(scene_obs, dtype=np.float64)
    blocks, places = {}, {}
    for i, color in enumerate(COLORS):
        place = block_place(s, i)
        if place == "table":
            blocks[color] = (float(s[6 + 6 * i]), float(s[7 + 6 * i]))
        else:
            places[color] = place
    return SymbolicState(bool(s[0] < 0), bool(s[1] > 0.07), bool(s[3] > SWITCH_ON_ABOVE), bool(s[5] > 0.5),
                         None, blocks, (), (), places)


def open_half(state: SymbolicState) -> str:
    """The half of the plank the sliding door has left: ``"slider_right"`` when the door is left."""
    return "slider_right" if state.slider_left else "slider_left"


def _corridor_clear(others: list[tuple[float, float]], axis: int, across: float, lo: float, hi: float) -> bool:
    """No obstacle within 8 cm of the line ``coord[1 - axis] = across`` between ``lo`` and ``hi`` along ``axis``."""
    return all(not (abs(o[1 - axis] - across) < 0.08 and lo - 0.09 < o[axis] < hi + 0.09) for o in others)


def drawer_push_block(blocks: dict[str, tuple[float, float]], obstacles: Collection[tuple[float, float]] = ()) -> str | None:
    """The table block ``push_into_drawer`` moves (the expert and the chain sampler agree): the first,
    in colour order, whose two moves (along y to a drawer slot's ``y``, then along -x into the
    drawer) are clear of the other blocks and ``obstacles`` for either slot (:data:`~integrations.gr1.sim.calvin_fixtures.DRAWER_SLOTS_Y`); ``None`` if none is."""
    for color in (c for c in COLORS if c in blocks):
        x, y = blocks[color]
        others = [xy for c, xy in blocks.items() if c != color] + list(obstacles)
        clear = all(_corridor_clear(others, 1, x, min(y, lane), max(y, lane)) and _corridor_clear(others, 0, lane, DRAWER_X, x + 0.04)
                    for lane in DRAWER_SLOTS_Y)
        if clear:
            return color
    return None


def feasible_calvin_tasks(state: SymbolicState) -> list[str]:
    """Tasks of :data:`CALVIN_TASKS` that can be done from ``state`` (sorted, so sampling is reproducible)."""
    names = feasible_tasks(state)  # the classic rules over the table blocks
    held = list(state.places.values())
    drawer_free = held.count("drawer") < CAPACITY
    if state.grasped is not None:
        if held.count(open_half(state)) < CAPACITY:
            names.append("place_in_slider")
        if state.drawer_open and drawer_free:
            names.append("place_in_drawer")
        return sorted(names)
    for color, place in state.places.items():
        if place == open_half(state):
            names.append(f"lift_{color}_block_slider")
        elif place == "drawer" and state.drawer_open:
            names.append(f"lift_{color}_block_drawer")
    if state.drawer_open and drawer_free and drawer_push_block(state.blocks, state.obstacles) is not None:
        names.append("push_into_drawer")
    return sorted(names)


def apply_calvin_task(state: SymbolicState, name: str) -> SymbolicState:
    """The symbolic state after task ``name`` (one of :data:`CALVIN_TASKS`) succeeded."""
    if name not in feasible_calvin_tasks(state):
        raise ValueError(f"task {name!r} is not feasible from {state}")
    places, blocks = dict(state.places), dict(state.blocks)
    if name.startswith("lift") and not name.endswith("_table"):
        color = name.split("_")[1]
        places.pop(color)
        return replace(state, grasped=color, places=places)
    if name.startswith("place_in"):
        places[state.grasped] = open_half(state) if name == "place_in_slider" else "drawer"
        return replace(state, grasped=None, places=places)
    if name == "push_into_drawer":
        color = drawer_push_block(blocks, state.obstacles)
        blocks.pop(color)
        places[color] = "drawer"
        return replace(state, blocks=blocks, places=places)
    return apply_task(state, name)


# ---------------------------------------------------------------------- chains
@dataclass(frozen=True)
class CalvinTaskChain(TaskChain):
    """A calvin-mode chain: its CALVIN symbolic start state too, and CALVIN's instructions."""

    initial_state: dict[str, Any] = field(default_factory=dict)

    @property
    def instructions(self) -> tuple[str, ...]:
        return tuple(CALVIN_TASKS[t].instruction for t in self.tasks)


def sample_calvin_scene_obs(seed: int) -> np.ndarray:
    """A calvin-mode start ``scene_obs``: :func:`~integrations.gr1.sim.calvin_fixtures.random_initial_state`
    drawn from ``seed``, realised with CALVIN's seeding (:func:`~integrations.gr1.sim.calvin_fixtures.realise_initial_state`)."""
    return realise_initial_state(random_initial_state(np.random.default_rng(int(seed) & 0xFFFFFFFF)))


def sample_calvin_chain(rng: np.random.Generator, scene_obs: np.ndarray, length: int,
                        allowed: Collection[str] | None = None) -> tuple[str, ...]:
    """One chain of ``length`` tasks, feasible in sequence from ``scene_obs`` (may be shorter if stuck).
    A lift is only drawn when a task can follow it (stack or place), unless it is the last task."""
    allowed = set(CALVIN_TASKS if allowed is None else allowed)
    state = calvin_symbolic_state(scene_obs)
    chain: list[str] = []
    while len(chain) < length:
        options = [o for o in feasible_calvin_tasks(state) if o in allowed]
        if len(chain) < length - 1:
            options = [o for o in options if not o.startswith("lift")
                       or set(feasible_calvin_tasks(apply_calvin_task(state, o))) & allowed]
        if not options:
            break
        name = options[int(rng.integers(len(options)))]
        chain.append(name)
        state = apply_calvin_task(state, name)
    return tuple(chain)


def sample_calvin_chains(num_chains: int, seed: int, chain_length: int = 5) -> list[CalvinTaskChain]:
    """Chains of ``chain_length`` of the 34 tasks from CALVIN-style start states (for demonstrations;
    the evaluation uses CALVIN's official chains, :meth:`integrations.gr1.eval_backends.EmbeddedBackend.sample_chains`)."""
    if num_chains < 1 or chain_length < 1:
        raise ValueError(f"num_chains and chain_length must be >= 1, got {num_chains}, {chain_length}")
    rng = np.random.default_rng(seed)
    chains: list[CalvinTaskChain] = []
    while len(chains) < num_chains:
        scene_seed = int(rng.integers(2**31))
        initial_state = random_initial_state(np.random.default_rng(scene_seed))
        scene_obs = realise_initial_state(initial_state)
        tasks = sample_calvin_chain(rng, scene_obs, chain_length)
        if len(tasks) == chain_length:
            chains.append(CalvinTaskChain(scene_seed, scene_obs, tasks, initial_state))
    return chains


__all__ = [
    "CALVIN_ONLY_TASKS", "CALVIN_TASKS", "CalvinTaskChain", "apply_calvin_task", "calvin_symbolic_state",
    "drawer_push_block", "feasible_calvin_tasks", "get_calvin_task_info", "open_half", "sample_calvin_chain",
    "sample_calvin_chains", "sample_calvin_scene_obs",
]
