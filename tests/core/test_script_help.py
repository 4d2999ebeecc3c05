"""`--help` of the integration and experiment scripts: no heavy import, every flag documented.

``--help`` should answer at once, so a script imports only tyro and its config dataclasses at
module level; torch, accelerate, pybullet, SMPL-X, open_clip, OpenCV and matplotlib load inside
the functions that use them. One subprocess runs every script's ``--help`` in turn and reports
which heavy modules each one added to ``sys.modules`` (no timing: the check is the imports).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "accelerate", "pybullet", "smplx", "open_clip", "cv2", "matplotlib")
SCRIPTS = {  # script -> its flags dataclass (table5 reuses table1's)
    "integrations/gr1/train.py": "TrainArgs",
    "integrations/gr1/evaluate.py": "EvalArgs",
    "integrations/chois/train.py": "TrainArgs",
    "integrations/chois/eval.py": "EvalArgs",
    "experiments/table1.py": "TableCommand",
    "experiments/table1_sim.py": "SimTableCommand",
    "experiments/table2.py": "Table2Command",
    "experiments/table3.py": "Table3Command",
    "experiments/table5.py": None,
}

PROBE = r"""
import contextlib, dataclasses, importlib.util, io, json, runpy, sys, typing
import tyro._docstrings as docstrings

heavy, scripts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
report = {}
for script, class_name in scripts.items():
    sys.argv = [script, "--help"]
    text, code = io.StringIO(), None
    with contextlib.redirect_stdout(text):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = exc.code
    loaded = sorted(m for m in heavy if m in sys.modules)
    undocumented = []
    if class_name:
        spec = importlib.util.spec_from_file_location("help_probe_" + script.replace("/", "_")[:-3], script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        cls = getattr(module, class_name)
        undocumented = [f.name for f in dataclasses.fields(cls) if not docstrings.get_field_docstring(cls, f.name, ())]
    report[script] = {"code": code, "heavy": loaded, "help": text.getvalue(), "undocumented": undocumented}
print(json.dumps(report))
"""


def test_help_is_light_and_documents_every_flag():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "experiments")]), "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(SCRIPTS)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(SCRIPTS)
    for script, result in report.items():
        assert result["code"] in (0, None), f"{script} --help exited with {result['code']}"
        assert "--help" in result["help"] and "usage" in result["help"].lower(), script
        assert result["heavy"] == [], f"{script} --help imported {result['heavy']}: move those imports into the functions"
        assert result["undocumented"] == [], f"{script}: flags without a description in the Attributes docstring: {result['undocumented']}"
