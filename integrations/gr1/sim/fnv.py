"""FNV-1 32-bit hash in pure Python, and CALVIN's use of it (CALVIN integration, paper §4.4).

The algorithm (FNV-1: multiply, then XOR; FNV-1a, not used here, XORs first)::

    hash = seed; for each byte: hash = (hash * 16777619) mod 2**32; hash ^= byte

The standard FNV-1 starts from the offset basis 2166136261 (so the empty input hashes to
0x811c9dc5). **CALVIN does not**: its evaluation
(``calvin_agent.evaluation.utils.get_env_state_for_initial_condition``) seeds numpy with
``pyhash.fnv1_32()(str(initial_condition.values()))`` before shuffling the block positions
and drawing the block rotations, and ``pyhash.fnv1_32`` starts from seed 0 by default (its
README: ``hasher('hello world') == 2805756500``, which is FNV-1 from 0, not from the offset
basis). :func:`calvin_initial_condition_seed` reproduces that seed without the ``pyhash``
C extension (which does not build on recent Pythons).

The embedded tabletop seeds its block rotations per object with :func:`object_seed`.
"""

from __future__ import annotations

from typing import Any, Mapping

FNV1_32_OFFSET_BASIS = 2166136261
"""0x811c9dc5, the standard 32-bit FNV offset basis (also the hash of the empty input)."""

FNV1_32_PRIME = 16777619
"""0x01000193 = 2**24 + 2**8 + 0x93, the 32-bit FNV prime."""

PYHASH_DEFAULT_SEED = 0
"""Start value of ``pyhash.fnv1_32()`` when called without ``seed`` (what CALVIN uses)."""


def fnv1_32(data: bytes | bytearray | str, seed: int = FNV1_32_OFFSET_BASIS) -> int:
    """FNV-1 32-bit hash of ``data``.

    Args:
        data: the bytes to hash; a ``str`` is hashed as its UTF-8 encoding.
        seed: start value; the standard offset basis by default. Hashing ``b + c`` equals
            hashing ``c`` with ``seed=fnv1_32(b, seed)``.

    Returns:
        The hash as an int in ``[0, 2**32)``.

    Raises:
        TypeError: when ``data`` is neither bytes-like nor ``str``.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"fnv1_32: data must be bytes or str, got {type(data).__name__}")
    value = int(seed) & 0xFFFFFFFF
    for byte in data:
        value = (value * FNV1_32_PRIME) & 0xFFFFFFFF
        value ^= byte
    return value


def pyhash_fnv1_32(data: bytes | bytearray | str) -> int:
    """``pyhash.fnv1_32()(data)``: FNV-1 32 from seed 0, as CALVIN calls it."""
    return fnv1_32(data, seed=PYHASH_DEFAULT_SEED)


def calvin_initial_condition_seed(initial_condition: Mapping[str, Any]) -> int:
    """The numpy seed CALVIN's evaluation derives from an initial-condition dict.

    Args:
        initial_condition: e.g. ``{"led": 0, "lightbulb": 1, "slider": "right", ...}`` in
            CALVIN's key order (the order matters: the dict's values are stringified).
    """
    return pyhash_fnv1_32(str(initial_condition.values()))


def object_seed(seed: int, name: str) -> int:
    """Per-object seed of the embedded tabletop: FNV-1 32 of ``"<seed>/<name>"``.

    Args:
        seed: the scene seed.
        name: the object's name, e.g. ``"block_red"``.
    """
    return fnv1_32(f"{int(seed)}/{name}")
