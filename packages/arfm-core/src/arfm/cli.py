"""The ``arfm`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module that exposes ``main(argv: list[str] | None)`` and
parses its own dataclass config with ``tyro``; this file only routes, so importing the CLI
never imports the model, the labelling pipeline or the evaluation code.
"""

from __future__ import annotations

import importlib
import sys

from arfm.errors import DEBUG_FLAG, run_cli

# name -> (module with main(argv), one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("arfm.train", "train the track predictor (flow matching or the regression ablation)"),
    "predict": ("arfm.predict", "predict future tracks for a clip and write a picture/GIF"),
    "stream": ("arfm.stream", "stream a video through the online horizon predictor (§3.4) and draw the live horizon"),
    "label": ("arfm.labelling.cli", "pseudo-label videos with a point tracker into a training set"),
    "eval": ("arfm.evaluation.cli", "evaluate predictors: Tables 1 and 5 of the paper"),
    "train-query": ("arfm.query.train", "train the query-information predictor (paper §3.3)"),
    "viz": ("arfm.viz", "draw tracks of a labelled clip or a prediction file"),
    "convert": ("arfm.convert.official", "convert the published ARFM checkpoint (--official <folder>) into an arfm checkpoint"),
}


def _usage() -> str:
    lines = ["usage: arfm <command> [options]   (arfm <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<12} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", f"errors print one line; add {DEBUG_FLAG} to any command for the full traceback"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Route ``arfm <command> ...`` to the command's module.

    Run as the ``arfm`` program (``argv`` None), a user error prints one line and exits with
    status 1 (``--debug`` shows the traceback, see :mod:`arfm.errors`); called from Python with
    an ``argv`` list, it raises the exception.
    """
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != DEBUG_FLAG]
    prog = f"arfm {args[0]}" if args and args[0] in SUBCOMMANDS else "arfm"
    run_cli(_route, prog, sys.argv[1:] if argv is None else argv, exit_on_error=argv is None)


def _route(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"arfm: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module_name, _ = SUBCOMMANDS[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"arfm: command {command!r} is not available in this installation ({exc})", file=sys.stderr)
            raise SystemExit(2) from exc
        raise
    module.main(rest)


if __name__ == "__main__":
    main()
