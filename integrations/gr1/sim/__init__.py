"""Embedded CALVIN-compatible tabletop simulator on pybullet (paper §4.4, issue 6).

Modules: :mod:`.tabletop_env` (the env, CALVIN API/spaces), :mod:`.scene` (bodies and the
``scene_obs`` layout), :mod:`.cameras`, :mod:`.tasks` (task oracle and chains),
:mod:`.expert` (scripted demonstrations), :mod:`.calvin_format` (CALVIN's on-disk format),
:mod:`.tracks` (exact ground-truth point tracks), :mod:`.generate` (dataset CLI),
:mod:`.fnv` (FNV-1 32-bit hash), :mod:`.oracle` (the ``gt`` row's future in closed loop);
CALVIN's full task set (``task_set="calvin"``): :mod:`.calvin_fixtures` (cabinet plank, open
drawer, official start states), :mod:`.calvin_task_set` (the 34 tasks and their chains),
:mod:`.calvin_expert` (plans for the nine tasks that need them), :mod:`.calvin_info` (CALVIN's
``get_info`` layout). See ``README.md`` in this folder.
"""

from integrations.gr1.sim.calvin_format import CalvinEpisodeReader, CalvinWriter, hashed_embedding
from integrations.gr1.sim.expert import ScriptedExpert, TaskDemo, collect_demos
from integrations.gr1.sim.fnv import fnv1_32
from integrations.gr1.sim.tabletop_env import CalvinTabletopEnv, relative_to_absolute, to_relative_action
from integrations.gr1.sim.tasks import TASKS, TaskChain, get_task_info, sample_task_chains

__all__ = [
    "CalvinEpisodeReader", "CalvinTabletopEnv", "CalvinWriter", "ScriptedExpert", "TASKS", "TaskChain", "TaskDemo",
    "collect_demos", "fnv1_32", "get_task_info", "hashed_embedding", "relative_to_absolute", "sample_task_chains",
    "to_relative_action",
]
