"""CALVIN-style tasks, their success oracle and long-horizon task chains (paper §4.4, Table 3).

Each task has a CALVIN-style name and language instruction and a success check computed
from simulator state alone: :func:`get_task_info` compares the ``info`` of
:meth:`CalvinTabletopEnv.get_info` at the start and end of a rollout, like CALVIN's
``Tasks.get_task_info(start_info, end_info)``, and returns the set of completed tasks.

:func:`sample_task_chains` draws chains of 5 tasks for the long-horizon protocol, each task
feasible in the state the previous ones leave (tracked symbolically: door/drawer/switch/LED
states, which block is held, where the blocks are and which ones are stacked).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np
import yaml

from integrations.gr1.sim.scene import BLOCK_COLORS, BLOCK_HALF, BLOCK_Y_LIMIT, SWITCH_ON_ABOVE, sample_scene_obs

PUSH_DISTANCE = 0.10
"""How far the expert pushes a block (m); success needs at least half of it."""
ROTATION = np.radians(75.0)
"""How far the expert turns a block (rad); success needs more than 60 deg, as CALVIN's oracle."""
_CALVIN_VALIDATION = Path(__file__).resolve().parents[1] / "calvin_data" / "new_playtable_validation.yaml"
COLORS = tuple(BLOCK_COLORS)

Info = dict[str, Any]


def _scene(info: Info) -> np.ndarray:
    return np.asarray(info["scene_obs"], dtype=np.float64)


def _block(info: Info, color: str) -> np.ndarray:
    i = COLORS.index(color)
    return _scene(info)[6 + 6 * i: 12 + 6 * i]


def _joint_moved(index: int, delta: float) -> Callable[[Info, Info], bool]:
    """Articulation ``index`` moved by at least ``delta`` (signed) between start and end."""
    return lambda s, e: (_scene(e)[index] - _scene(s)[index]) * np.sign(delta) >= abs(delta)


def _flag_turned(index: int, on: bool) -> Callable[[Info, Info], bool]:
    return lambda s, e: bool(_scene(s)[index] > 0.5) != on and bool(_scene(e)[index] > 0.5) == on


def _pushed(color: str, direction: float) -> Callable[[Info, Info], bool]:
    def check(s: Info, e: Info) -> bool:
        start, end = _block(s, color), _block(e, color)
        on_table = start[2] < BLOCK_HALF + 0.01 and end[2] < BLOCK_HALF + 0.01
        return bool(on_table and (end[1] - start[1]) * direction >= PUSH_DISTANCE / 2)
    return check


def _lifted(color: str) -> Callable[[Info, Info], bool]:
    def check(s: Info, e: Info) -> bool:
        start, end = _block(s, color), _block(e, color)
        contacts = e.get("block_contacts", {}).get(color, set())
        return bool(start[2] < BLOCK_HALF + 0.01 and end[2] > start[2] + 0.05 and "robot" in contacts and "table" not in contacts)
    return check


def _rotated(color: str, direction: float) -> Callable[[Info, Info], bool]:
    """Turned by more than 60 deg about z (``direction`` +1: left / counter-clockwise from above),
    back on the table, released, and moved less than 10 cm (CALVIN's ``rotate_object`` limits)."""
    def check(s: Info, e: Info) -> bool:
        start, end = _block(s, color), _block(e, color)
        turn = float((end[5] - start[5] + np.pi) % (2 * np.pi) - np.pi) * direction
        flat = abs(end[3]) < np.radians(30) and abs(end[4]) < np.radians(30)
        released = "robot" not in e.get("block_contacts", {}).get(color, set())
        return bool(turn > np.radians(60) and flat and released and end[2] < BLOCK_HALF + 0.01
                    and np.linalg.norm(end[:3] - start[:3]) < 0.10)
    return check


def _stacked_pairs(info: Info) -> set[tuple[str, str]]:
    """(top, bottom) pairs of blocks resting on each other and not held by the robot."""
    pairs = set()
    for top in COLORS:
        contacts = info.get("block_contacts", {}).get(top, set())
        for bottom in COLORS:
            if top == bottom or bottom not in contacts or "robot" in contacts:
                continue
            a, b = _block(info, top), _block(info, bottom)
            if 1.5 * BLOCK_HALF < a[2] - b[2] < 2.5 * BLOCK_HALF and np.linalg.norm(a[:2] - b[:2]) < 1.5 * BLOCK_HALF:
                pairs.add((top, bottom))
    return pairs


def _stacked(s: Info, e: Info) -> bool:
    return bool(_stacked_pairs(e) - _stacked_pairs(s))


def _unstacked(s: Info, e: Info) -> bool:
    """A block that rested on another at the start is back on the table, released, at the end."""
    for top, _ in _stacked_pairs(s):
        contacts = e.get("block_contacts", {}).get(top, set())
        if _block(e, top)[2] < BLOCK_HALF + 0.01 and "robot" not in contacts and not contacts & set(COLORS):
            return True
    return False


def unstack_place(xy: tuple[float, float], others: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Where a block taken off a stack at ``xy`` is put down: 10 cm along y towards the middle of the
    table, else away from it, clear (9 cm) of ``others`` and within the block area; ``None`` if
    neither is free. The chain sampler and the expert share this rule."""
    toward = -1.0 if xy[1] > 0 else 1.0
    for dy in (toward * 0.10, -toward * 0.10):
        place = (xy[0], xy[1] + dy)
        if abs(place[1]) <= BLOCK_Y_LIMIT and _clear(place, others, 0.09):
            return place
    return None


@dataclass(frozen=True)
class Task:
    """A task: CALVIN-style name, one language instruction, success check ``(start_info, end_info)``."""

    name: str
    instruction: str
    check: Callable[[Info, Info], bool]


def _make_tasks() -> dict[str, Task]:
    tasks = [
        Task("open_drawer", "pull the handle to open the drawer", _joint_moved(1, 0.08)),
        Task("close_drawer", "push the handle to close the drawer", _joint_moved(1, -0.08)),
        Task("move_slider_left", "push the sliding door to the left side", _joint_moved(0, -0.10)),
        Task("move_slider_right", "push the sliding door to the right side", _joint_moved(0, 0.10)),
        Task("turn_on_lightbulb", "use the switch to turn on the light bulb", _flag_turned(4, True)),
        Task("turn_off_lightbulb", "use the switch to turn off the light bulb", _flag_turned(4, False)),
        Task("turn_on_led", "press the button to turn on the led light", _flag_turned(5, True)),
        Task("turn_off_led", "press the button to turn off the led light", _flag_turned(5, False)),
        Task("stack_block", "stack the blocks on top of each other", _stacked),
    ]
    for color in COLORS:
        tasks += [
            Task(f"push_{color}_block_left", f"push the {color} block to the left", _pushed(color, -1.0)),
            Task(f"push_{color}_block_right", f"push the {color} block to the right", _pushed(color, 1.0)),
            Task(f"lift_{color}_block_table", f"lift the {color} block from the table", _lifted(color)),
        ]
    calvin_text = {k: v[0] for k, v in yaml.safe_load(_CALVIN_VALIDATION.read_text()).items()}
    tasks.append(Task("unstack_block", calvin_text["unstack_block"], _unstacked))
    for color in COLORS:  # added for CALVIN's task set: CALVIN's own instructions
        tasks += [Task(f"rotate_{color}_block_{side}", calvin_text[f"rotate_{color}_block_{side}"], _rotated(color, sign))
                  for side, sign in (("left", 1.0), ("right", -1.0))]
    return {t.name: t for t in tasks}


TASKS: dict[str, Task] = _make_tasks()
"""All tasks by name."""
CLASSIC_TASKS: frozenset[str] = frozenset(t for t in TASKS if not t.startswith("rotate_") and t != "unstack_block")
"""The first 18 tasks: what :func:`sample_task_chains` draws by default (the rotations and
``unstack_block`` are opt-in, so chains and demonstrations of a given seed stay as they were)."""


def get_task_info(start_info: Info, end_info: Info) -> set[str]:
    """Names of the tasks completed between two ``env.get_info()`` snapshots (CALVIN's oracle)."""
    for name, info in (("start_info", start_info), ("end_info", end_info)):
        if "scene_obs" not in info or np.asarray(info["scene_obs"]).shape != (24,):
            raise ValueError(f"{name} must hold a (24,) 'scene_obs' (from CalvinTabletopEnv.get_info())")
    return {name for name, task in TASKS.items() if task.check(start_info, end_info)}


# ---------------------------------------------------------------------- symbolic state and chains
@dataclass(frozen=True)
class SymbolicState:
    """What the chain sampler tracks between tasks.

    Attributes:
        slider_left / drawer_open / bulb_on / led_on: articulation states.
        grasped: colour of the held block or ``None``.
        blocks: colour -> (x, y) of blocks free on the table (stacked or held blocks are absent).
        obstacles: (x, y) of stacks, which blocks must keep clear of.
        stacks: ``(top, bottom, (x, y))`` of each stack, oldest first.
        places: colour -> ``"slider_left"`` / ``"slider_right"`` / ``"drawer"`` of blocks resting on
            the cabinet plank or in the drawer (``task_set="calvin"`` only, see
            :mod:`integrations.gr1.sim.calvin_task_set`; always empty with the classic tasks).
    """

    slider_left: bool
    drawer_open: bool
    bulb_on: bool
    led_on: bool
    grasped: str | None = None
    blocks: dict[str, tuple[float, float]] = field(default_factory=dict)
    obstacles: tuple[tuple[float, float], ...] = ()
    stacks: tuple[tuple[str, str, tuple[float, float]], ...] = ()
    places: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def from_scene_obs(scene_obs: np.ndarray) -> "SymbolicState":
        """Read the symbolic state of a ``scene_obs`` (all blocks assumed free on the table)."""
        s = np.asarray(scene_obs, dtype=np.float64)
        blocks = {c: (float(s[6 + 6 * i]), float(s[7 + 6 * i])) for i, c in enumerate(COLORS)}
        return SymbolicState(bool(s[0] < 0), bool(s[1] > 0.07), bool(s[3] > SWITCH_ON_ABOVE), bool(s[5] > 0.5),
                             None, blocks, ())


def _clear(xy: tuple[float, float], others: list[tuple[float, float]], radius: float) -> bool:
    return all(np.hypot(xy[0] - o[0], xy[1] - o[1]) > radius for o in others)


def _push_feasible(state: SymbolicState, color: str, direction: float) -> bool:
    x, y = state.blocks[color]
    target_y = y + direction * PUSH_DISTANCE
    if abs(target_y) > BLOCK_Y_LIMIT:
        return False
    others = [xy for c, xy in state.blocks.items() if c != color] + list(state.obstacles)
    # The block and the pusher behind it sweep a corridor; nothing may stand in it or near the goal.
    for ox, oy in others:
        if abs(ox - x) < 0.08 and min(y, target_y) - 0.09 < oy < max(y, target_y) + 0.09:
            return False
    return True


def feasible_tasks(state: SymbolicState) -> list[str]:
    """Tasks that can be done from ``state`` (sorted, so sampling is reproducible)."""
    if state.grasped is not None:
        return ["stack_block"] if state.blocks else []
    extra = []
    if state.stacks:
        top, bottom, xy = state.stacks[0]
        others = [o for c, o in state.blocks.items()] + [o for o in state.obstacles if o != xy]
        if unstack_place(xy, others + [xy]) is not None:
            extra.append("unstack_block")
    names = ["close_drawer" if state.drawer_open else "open_drawer",
             "move_slider_right" if state.slider_left else "move_slider_left",
             "turn_off_lightbulb" if state.bulb_on else "turn_on_lightbulb",
             "turn_off_led" if state.led_on else "turn_on_led"]
    for color, xy in state.blocks.items():
        others = [o for c, o in state.blocks.items() if c != color] + list(state.obstacles)
        if _clear(xy, others, 0.09):
            names += [f"lift_{color}_block_table", f"rotate_{color}_block_left", f"rotate_{color}_block_right"]
        names += [f"push_{color}_block_{side}" for side, d in (("left", -1.0), ("right", 1.0)) if _push_feasible(state, color, d)]
    return sorted(names + extra)


def stack_target(state: SymbolicState) -> str:
    """The block the held one goes on: the first free block in colour order (the expert agrees)."""
    if not state.blocks:
        raise ValueError("stack_target: no free block to stack on")
    return next(c for c in COLORS if c in state.blocks)


def apply_task(state: SymbolicState, name: str) -> SymbolicState:
    """The symbolic state after task ``name`` succeeded."""
    if name not in feasible_tasks(state):
        raise ValueError(f"task {name!r} is not feasible from {state}")
    if name.endswith("_drawer"):
        return replace(state, drawer_open=name == "open_drawer")
    if name.startswith("move_slider"):
        return replace(state, slider_left=name.endswith("left"))
    if name.endswith("lightbulb"):
        return replace(state, bulb_on="_on_" in name)
    if name.endswith("led"):
        return replace(state, led_on="_on_" in name)
    blocks = dict(state.blocks)
    if name == "stack_block":
        below = stack_target(state)
        xy = blocks.pop(below)
        return replace(state, grasped=None, blocks=blocks, obstacles=state.obstacles + (xy,),
                       stacks=state.stacks + ((state.grasped, below, xy),))
    if name == "unstack_block":
        top, bottom, xy = state.stacks[0]
        others = [o for o in blocks.values()] + [o for o in state.obstacles if o != xy]
        blocks[bottom], blocks[top] = xy, unstack_place(xy, others + [xy])
        obstacles = list(state.obstacles)
        obstacles.remove(xy)
        return replace(state, blocks=blocks, obstacles=tuple(obstacles), stacks=state.stacks[1:])
    color = name.split("_")[1]
    if name.startswith("rotate"):
        return state  # turned in place
    if name.startswith("lift"):
        blocks.pop(color)
        return replace(state, grasped=color, blocks=blocks)
    x, y = blocks[color]
    blocks[color] = (x, y + (PUSH_DISTANCE if name.endswith("right") else -PUSH_DISTANCE))
    return replace(state, blocks=blocks)


@dataclass(frozen=True)
class TaskChain:
    """One long-horizon evaluation episode: the initial scene and the task sequence."""

    scene_seed: int
    scene_obs: np.ndarray
    tasks: tuple[str, ...]

    @property
    def instructions(self) -> tuple[str, ...]:
        """Language instruction of each task."""
        return tuple(TASKS[t].instruction for t in self.tasks)


def sample_chain(rng: np.random.Generator, scene_obs: np.ndarray, length: int,
                 allowed: Collection[str] = CLASSIC_TASKS) -> tuple[str, ...]:
    """One chain of ``length`` tasks of ``allowed``, feasible in sequence from ``scene_obs`` (may be shorter if stuck)."""
    state = SymbolicState.from_scene_obs(scene_obs)
    chain: list[str] = []
    while len(chain) < length:
        options = [o for o in feasible_tasks(state) if o in allowed]
        if not chain:
            options = [o for o in options if o != "stack_block"]
        # A lift must be followed by a stack, so only lift when a stack target will remain
        # or when the lift is the last task.
        if len(chain) < length - 1:
            options = [o for o in options if not o.startswith("lift") or len(state.blocks) >= 2]
        if not options:
            break
        name = options[int(rng.integers(len(options)))]
        chain.append(name)
        state = apply_task(state, name)
    return tuple(chain)


def sample_task_chains(num_chains: int, seed: int, chain_length: int = 5,
                       tasks: Collection[str] = CLASSIC_TASKS) -> list[TaskChain]:
    """Chains of ``chain_length`` tasks for the long-horizon protocol (CALVIN uses 1000 x 5).

    Chain ``i`` starts from ``sample_scene_obs(scene_seed)`` with a scene seed drawn from
    ``seed``; every task is feasible in the state left by the previous ones.

    Args:
        num_chains: how many chains (>= 1).
        seed: sampling seed.
        chain_length: tasks per chain (>= 1).
        tasks: the task names chains are drawn from (default: :data:`CLASSIC_TASKS`; ``TASKS`` adds
            the rotations).
    """
    if num_chains < 1 or chain_length < 1:
        raise ValueError(f"num_chains and chain_length must be >= 1, got {num_chains}, {chain_length}")
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"sample_task_chains: unknown task names {sorted(unknown)}")
    rng = np.random.default_rng(seed)
    chains: list[TaskChain] = []
    while len(chains) < num_chains:
        scene_seed = int(rng.integers(2**31))
        scene_obs = sample_scene_obs(scene_seed)
        chain_tasks = sample_chain(rng, scene_obs, chain_length, tasks)
        if len(chain_tasks) == chain_length:
            chains.append(TaskChain(scene_seed, scene_obs, chain_tasks))
    return chains
