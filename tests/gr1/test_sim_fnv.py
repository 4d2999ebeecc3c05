"""FNV-1 32-bit hash against values computed by hand from the algorithm's definition."""

import pytest

from integrations.gr1.sim.fnv import (
    FNV1_32_OFFSET_BASIS, FNV1_32_PRIME, calvin_initial_condition_seed, fnv1_32, object_seed, pyhash_fnv1_32,
)


def test_known_values():
    assert fnv1_32(b"") == 0x811C9DC5 == FNV1_32_OFFSET_BASIS
    assert fnv1_32(b"a") == 0x050C5D7E
    assert fnv1_32(b"foobar") == 0x31F0B262


def test_one_byte_by_hand():
    # FNV-1: multiply first, then xor (FNV-1a would give 0xe40c292c for "a").
    assert fnv1_32(b"a") == ((FNV1_32_OFFSET_BASIS * FNV1_32_PRIME) % 2**32) ^ ord("a")
    assert fnv1_32(b"a") != 0xE40C292C


def test_pyhash_convention_used_by_calvin():
    # pyhash's README: fnv1_32()('hello world') == 2805756500, ('hello ') == 406904344, and
    # hashing 'world' from seed 406904344 gives the same as 'hello world': FNV-1 from seed 0.
    assert pyhash_fnv1_32("hello world") == 2805756500
    assert pyhash_fnv1_32("hello ") == 406904344
    assert fnv1_32("world", seed=406904344) == 2805756500
    assert pyhash_fnv1_32(b"") == 0 and pyhash_fnv1_32(b"a") == ord("a")  # 0 * prime ^ byte
    condition = {"led": 1, "lightbulb": 0, "slider": "right"}
    assert calvin_initial_condition_seed(condition) == pyhash_fnv1_32("dict_values([1, 0, 'right'])")


def test_str_is_utf8_and_range():
    assert fnv1_32("foobar") == fnv1_32(b"foobar")
    assert fnv1_32("é") == fnv1_32("é".encode("utf-8"))
    assert 0 <= fnv1_32(b"\xff" * 100) < 2**32


def test_object_seed_distinct_and_stable():
    seeds = {object_seed(0, f"block_{c}") for c in ("red", "blue", "pink")}
    assert len(seeds) == 3
    assert object_seed(7, "block_red") == fnv1_32("7/block_red")


def test_bad_type():
    with pytest.raises(TypeError, match="bytes or str"):
        fnv1_32(123)  # type: ignore[arg-type]
