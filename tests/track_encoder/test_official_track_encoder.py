"""The official ARFM track encoder loads exactly: fixture parity and full-size key coverage (issue 12).

Fixture: ``../shared/fixtures/official/arfm_track_encoder.*`` (random weights, reduced sizes,
outputs computed by the official code; see its README, behaviour 16).
"""

from __future__ import annotations

import re

import pytest
import torch

from arfm.coords import pixels_to_normalized
from tests.conftest import SHARED
from track_encoder import TrackEncoder, load_official_track_encoder
from track_encoder.convert import config_from_official_shapes, convert_official_state_dict, official_key_to_ours
from track_encoder.model import official_fourier_features

FIXTURES = SHARED / "fixtures" / "official"
ATOL = 1e-5


def read_full_keys(path) -> dict[str, tuple[int, ...]]:
    """``key<TAB>(shape)<TAB>dtype[<TAB>role]`` lines of a ``*.full_keys.txt`` -> key -> shape."""
    shapes = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        shapes[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return shapes


@pytest.fixture(scope="module")
def fixture():
    safetensors = pytest.importorskip("safetensors.torch")
    if not (FIXTURES / "arfm_track_encoder.safetensors").is_file():
        pytest.skip(f"official fixtures not found at {FIXTURES}")
    state = safetensors.load_file(FIXTURES / "arfm_track_encoder.safetensors")
    io = safetensors.load_file(FIXTURES / "arfm_track_encoder.io.safetensors")
    model = load_official_track_encoder(state, heads=4).eval()  # the fixture's 4 heads (config.json)
    return model, io


def encode(model: TrackEncoder, tracks_px: torch.Tensor, mask: torch.Tensor | None = None):
    with torch.no_grad():
        return model(pixels_to_normalized(tracks_px, 256), mask, return_tokens=True)


def test_converted_config_has_the_fixture_sizes(fixture):
    model, _ = fixture
    c = model.config
    assert (c.num_steps, c.dim, c.depth, c.heads, c.mlp_ratio) == (6, 64, 2, 4, 4.0)
    assert (c.start_encoding, c.start_reads_x_only, c.zero_shifts, c.gelu, c.qkv_bias) == ("official", True, True, "exact", False)


def test_start_features_match_the_official_fourier_features(fixture):
    model, io = fixture
    feats = model.start_features(pixels_to_normalized(io["in.tracks"][:, :, 0], 256))
    torch.testing.assert_close(feats, io["mid.start_position_fourier_features"], atol=ATOL, rtol=0)
    # by hand: p = 128 px, k = 0.5 (last frequency): [0.5, sin(64 pi) = 0, cos(64 pi) = 1]
    f = official_fourier_features(torch.tensor(128.0))
    assert f.shape == (257,)
    assert f[0] == 0.5 and abs(f[128]) < 1e-4 and abs(f[256] - 1) < 1e-6


def test_track_tokens_and_outputs_match(fixture):
    model, io = fixture
    tracks = pixels_to_normalized(io["in.tracks"], 256)
    with torch.no_grad():
        tokens = model.start_proj(model.start_features(tracks[:, :, 0])) + model.shift_proj(io["mid.relative_shift_projection_input"])
    torch.testing.assert_close(tokens, io["mid.track_tokens"], atol=ATOL, rtol=0)
    cls, per_track = encode(model, io["in.tracks"])
    torch.testing.assert_close(cls, io["out.cls"], atol=ATOL, rtol=0)
    torch.testing.assert_close(per_track, io["out.tokens"], atol=ATOL, rtol=0)


def test_masked_call_matches(fixture):
    model, io = fixture
    mask = io["in.attention_mask"] > 0.5
    assert not mask.all(), "the fixture masks some tracks"
    cls, per_track = encode(model, io["in.tracks"], mask)
    torch.testing.assert_close(cls, io["out.masked.cls"], atol=ATOL, rtol=0)
    torch.testing.assert_close(per_track, io["out.masked.tokens"], atol=ATOL, rtol=0)


def test_only_the_first_x_is_read(fixture):
    """Official quirk (README 16): changing y and every later x leaves the output unchanged."""
    model, io = fixture
    assert not torch.equal(io["in.tracks_same_start_x"], io["in.tracks"])
    cls, _ = encode(model, io["in.tracks_same_start_x"])
    torch.testing.assert_close(cls, io["out.same_start_x.cls"], atol=ATOL, rtol=0)
    torch.testing.assert_close(cls, encode(model, io["in.tracks"])[0], atol=1e-6, rtol=0)


def test_full_size_official_keys_are_all_accounted_for():
    path = FIXTURES / "arfm_track_encoder.full_keys.txt"
    if not path.is_file():
        pytest.skip(f"official fixtures not found at {FIXTURES}")
    shapes = read_full_keys(path)
    assert len(shapes) == 139  # as the file header says
    config = config_from_official_shapes(shapes, heads=12)
    assert (config.num_steps, config.dim, config.depth) == (16, 768, 12)
    with torch.device("meta"):
        ours = TrackEncoder(config).state_dict()
    fake = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    converted = convert_official_state_dict(fake, ours)
    assert set(converted) == set(ours)


def test_unknown_and_missing_keys_are_named(fixture):
    model, _ = fixture
    with pytest.raises(KeyError, match="track_embed.extra"):
        official_key_to_ours("track_embed.extra.weight")
    ours = model.state_dict()
    official = {"cls_token": ours["cls_token"]}
    with pytest.raises(KeyError, match="norm.weight"):
        convert_official_state_dict(official, ours)
