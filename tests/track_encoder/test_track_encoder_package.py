"""Track encoder (paper §3.5): every input matters, order of tracks does not, bad input is refused."""

import pytest
import torch

from track_encoder import TrackEncoder, TrackEncoderConfig, tiny_track_encoder_config
from track_encoder.model import fourier_features


@pytest.fixture(scope="module")
def encoder() -> TrackEncoder:
    torch.manual_seed(0)
    return TrackEncoder(tiny_track_encoder_config(num_steps=6)).eval()


def tracks(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(2, 5, 1, 2, generator=g) * 1.6 - 0.8
    return start + torch.cumsum(torch.randn(2, 5, 6, 2, generator=g) * 0.02, dim=2)


def test_output_shape(encoder):
    assert encoder(tracks()).shape == (2, 64)


def test_start_position_and_every_shift_change_the_encoding(encoder):
    """A bug that zeroes the shifts (as in the official release) or drops the start fails here."""
    base = tracks()
    out = encoder(base)
    moved = base.clone()
    moved[:, :, :] += 0.1  # same shifts, different start
    assert not torch.allclose(encoder(moved), out, atol=1e-5)
    for step in range(1, base.shape[2]):
        changed = base.clone()
        changed[:, :, step:] += 0.05  # changes exactly the shift into `step`
        assert not torch.allclose(encoder(changed), out, atol=1e-5), f"shift {step} is ignored"


def test_invariant_to_the_order_of_tracks(encoder):
    base = tracks()
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(encoder(base[:, perm]), encoder(base), atol=1e-5)


def test_padded_tracks_are_ignored(encoder):
    base = tracks()
    padded = torch.cat([base, torch.rand(2, 3, 6, 2)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3] * 2)
    assert torch.allclose(encoder(padded, mask), encoder(base), atol=1e-5)


def test_fourier_features_by_hand():
    f = fourier_features(torch.tensor([[0.5, 0.0]]), bands=1)
    # per axis sin(pi * v), cos(pi * v): x = 0.5 -> (1, 0); y = 0 -> (0, 1)
    assert torch.allclose(f, torch.tensor([[1.0, 0.0, 0.0, 1.0]]), atol=1e-6)


def test_bad_input_is_refused(encoder):
    with pytest.raises(ValueError, match="zero tracks"):
        encoder(torch.zeros(1, 0, 6, 2))
    with pytest.raises(ValueError, match="6 steps"):
        encoder(torch.zeros(1, 3, 5, 2))
    with pytest.raises(ValueError, match="NaN"):
        encoder(torch.full((1, 3, 6, 2), float("nan")))
    with pytest.raises(ValueError, match="no real tracks"):
        encoder(tracks(), torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_steps"):
        TrackEncoderConfig(num_steps=1)


def test_paper_default_is_vit_base():
    cfg = TrackEncoderConfig()
    assert (cfg.dim, cfg.depth, cfg.heads) == (768, 12, 12)


def test_default_fourier_bands_resolve_a_pixel_without_hashing_the_start():
    """Highest default band: period 2 px of the 256 frame. Starts a pixel apart stay distinct,
    and a 0.1 px jitter moves the features far less than a 1 px step (with the former 32
    octaves, up to 2^31 pi, any jitter scrambled them)."""
    cfg = TrackEncoderConfig()
    assert 256 / 2 ** (cfg.fourier_bands - 1) == 2.0
    px = 2.0 / 256  # one pixel in normalised units
    centres = torch.stack([(torch.arange(256) + 0.5) * px - 1, torch.zeros(256)], dim=-1)
    feats = fourier_features(centres, cfg.fourier_bands)
    gaps = torch.cdist(feats, feats) + torch.eye(256) * 1e9
    jitter = (fourier_features(centres + torch.tensor([0.1 * px, 0.0]), cfg.fourier_bands) - feats).norm(dim=-1)
    assert jitter.max() < 0.5 * gaps.min()
    hashed = fourier_features(centres, 32)
    hashed_jitter = (fourier_features(centres + torch.tensor([0.1 * px, 0.0]), 32) - hashed).norm(dim=-1)
    assert hashed_jitter.max() > 0.5 * (torch.cdist(hashed, hashed) + torch.eye(256) * 1e9).min()
    with pytest.raises(ValueError, match="fourier_bands"):
        TrackEncoderConfig(fourier_bands=33)
    assert TrackEncoderConfig(fourier_bands=32).fourier_bands == 32  # older checkpoints still load
