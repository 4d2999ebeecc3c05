"""User errors: one clear line on the terminal, and the input checks that raise them.

Every command-line entry point (``arfm <command>``, ``python -m arfm.<module>`` as run by
``accelerate launch``, the integrations' scripts) goes through :func:`run_cli`. Run as a
program, a *user* error (bad flag value, missing or corrupt file, unreadable video: the
exceptions in :data:`USER_ERRORS`) prints ``<prog>: error: <message>`` on one line and exits
with status 1; ``--debug`` (or ``ARFM_DEBUG=1``) shows the traceback instead. Anything else
is a bug and keeps its traceback. Called from Python with an explicit ``argv``, errors stay
exceptions, so tests and notebooks see the real type.

The checks below live here so the model, the online predictor and the CLIs share one
definition of a valid frame and a valid query point.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

DEBUG_FLAG = "--debug"


class UserError(Exception):
    """A problem with what the user asked for that fits no built-in type (e.g. a busy output folder)."""


# OSError covers missing/unreadable files (FileNotFoundError, PermissionError, ...);
# ValueError covers bad values and corrupt files (VideoReadError and config errors subclass it);
# KeyError an unknown name in a registry; ModuleNotFoundError an optional dependency not installed.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, ValueError, OSError, KeyError, ModuleNotFoundError)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (a KeyError's message without repr quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(text.split())
    return text or type(exc).__name__


def run_cli(
    main: Callable[[list[str]], Any],
    prog: str,
    argv: Sequence[str] | None = None,
    exit_on_error: bool | None = None,
) -> Any:
    """Run ``main(argv)`` as a command: user errors become one line and exit status 1.

    Args:
        main: the command's ``main(argv: list[str])``.
        prog: the name printed before the message (``"arfm predict"``).
        argv: arguments; ``None`` reads ``sys.argv[1:]`` (a program run).
        exit_on_error: print one line and exit on a user error; default: only for a program
            run (``argv is None``), so Python callers keep the exception.

    Returns:
        What ``main`` returned.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("ARFM_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    if exit_on_error is None:
        exit_on_error = argv is None
    if debug or not exit_on_error:
        return main(args)
    try:
        return main(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except USER_ERRORS as exc:
        print(f"{prog}: error: {one_line(exc)}  (rerun with {DEBUG_FLAG} for the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def check_frame_size(height: int, width: int, expected: int, what: str = "frames") -> None:
    """Raise if a frame is not the ``expected`` x ``expected`` model frame.

    The model's coordinates are pixels of that frame (:mod:`arfm.coords`): a larger frame
    would be read at the wrong places without any error, so it is refused here.
    """
    if (int(height), int(width)) != (expected, expected):
        raise ValueError(
            f"{what}: got {int(width)}x{int(height)} pixels (width x height), the model expects {expected}x{expected}: "
            "bring them there first (arfm.data.video.FrameTransform or read_video(..., transform='center_crop'))"
        )


def check_query_points(points: Any, size: int | None, what: str = "queries") -> None:
    """Raise, naming the first offending point, unless ``points`` is a non-empty ``(N, 2)`` array
    of finite ``(x, y)`` pixels, each in ``[0, size)`` (the frame check is skipped for ``size=None``:
    a point the caller is already tracking may have left the frame)."""
    import numpy as np

    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"{what} must be a non-empty (N, 2) array of (x, y) pixels, got shape {points.shape}")
    bad = ~np.isfinite(points).all(axis=1)
    where = "is not finite"
    if size is not None and not bad.any():
        bad = ((points < 0) | (points >= size)).any(axis=1)
        where = f"is outside the {size}x{size} model frame; pixels must lie in [0, {size})"
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        x, y = points[index]
        raise ValueError(f"{what}: point {index} at (x={x:g}, y={y:g}) {where} ({int(bad.sum())} of {len(points)} points)")


def check_positive(value: float, flag: str, minimum: float = 1) -> None:
    """Raise ``ValueError`` naming ``flag`` unless ``value >= minimum``."""
    if not value >= minimum:
        raise ValueError(f"{flag} must be >= {minimum:g}, got {value}")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value can fill a field annotated ``hint`` (unknown hints are accepted)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # JSON writes 1.0 as 1
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return all(_matches(v, args[0]) for v in value) if args else True
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, hint))
    return True


def check_field_types(cls: type, data: dict, what: str) -> None:
    """Raise ``ValueError`` naming the field when saved config ``data`` does not fit dataclass ``cls``.

    A config.json edited by hand (``"dim": "768"``) would otherwise fail deep inside the model
    with an error that names nothing. Nested dataclass fields are checked recursively.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what} config must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{what} config has unknown fields {unknown}: saved by a newer version?")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value, hint = data[field.name], hints[field.name]
        if not _matches(value, hint):
            expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ValueError(f"invalid {what} config field '{field.name}': expected {expected}, got {value!r} ({type(value).__name__})")
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            check_field_types(hint, value, f"{what}.{field.name}")


def load_safetensors_checked(model: Any, path: str | Path) -> Any:
    """``safetensors.torch.load_model(model, path, strict=True)`` with errors that name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    try:
        load_model(model, str(path), strict=True)
    except SafetensorError as exc:
        raise ValueError(f"weights file {path} is corrupt or truncated ({exc}); re-save or re-download it") from exc
    except RuntimeError as exc:  # missing/unexpected keys or shape mismatches
        raise ValueError(f"weights file {path} does not match the model its config describes: {one_line(exc)}") from exc
    return model
