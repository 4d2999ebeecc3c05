"""FrameTransform (arfm.coords): source frames of any size <-> the 256 x 256 model frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arfm.coords import FrameTransform
from arfm.data.video import FrameTransform as VideoFrameTransform


@pytest.mark.parametrize(
    "mode, source, model",
    [
        # 640x480 centre crop: x in [80, 560) kept, scale 256 / 480
        ("center_crop", [[80, 0], [560, 480], [320, 240], [200, 120]], [[0, 0], [256, 256], [128, 128], [64, 64]]),
        # 640x480 letterbox: scale 0.4 -> 256 x 192 pasted 32 px down
        ("letterbox", [[0, 0], [640, 480], [320, 240], [100, 50]], [[0, 32], [256, 224], [128, 128], [40, 52]]),
        # 640x480 stretched: x * 0.4, y * 256 / 480
        ("resize", [[0, 0], [640, 480], [320, 240], [100, 60]], [[0, 0], [256, 256], [128, 128], [40, 32]]),
    ],
)
def test_points_match_hand_computed_cases_on_a_landscape_source(mode, source, model):
    t = FrameTransform(width=640, height=480, mode=mode)
    np.testing.assert_allclose(t.points_to_model(np.array(source, np.float64)), model, atol=1e-9)
    np.testing.assert_allclose(t.points_to_source(np.array(model, np.float64)), source, atol=1e-9)


def test_portrait_and_odd_sizes():
    # 200 wide x 301 tall: the crop starts at y = (301 - 200) // 2 = 50, scale 256 / 200 = 1.28
    t = FrameTransform(width=200, height=301, mode="center_crop")
    np.testing.assert_allclose(t.points_to_model(np.array([[0.0, 50.0], [100.0, 150.0]])), [[0, 0], [128, 128]], atol=1e-9)
    # 100 x 60 letterbox: 256 x round(153.6) = 154 rows, pasted (256 - 154) // 2 = 51 px down
    t = FrameTransform(width=100, height=60, mode="letterbox")
    assert t.affine == pytest.approx((2.56, 154 / 60, 0.0, 51.0))
    assert t.content_box() == pytest.approx((0.0, 51.0, 256.0, 205.0))
    np.testing.assert_allclose(t.points_to_model(np.array([100.0, 60.0])), [256.0, 205.0], atol=1e-9)


@pytest.mark.parametrize("mode", ["center_crop", "letterbox", "resize"])
@pytest.mark.parametrize("size", [(640, 480), (200, 301), (256, 256), (37, 1000)])
def test_round_trip_is_exact(mode, size):
    t = FrameTransform(width=size[0], height=size[1], mode=mode)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 1, (5, 7, 2)) * np.array(size)
    back = t.points_to_source(t.points_to_model(points))
    assert back.dtype == np.float64 and back.shape == points.shape
    np.testing.assert_allclose(back, points, rtol=0, atol=1e-9)
    points32 = points.astype(np.float32)
    back32 = t.points_to_source(t.points_to_model(points32))
    assert back32.dtype == np.float32
    np.testing.assert_allclose(back32, points32, rtol=0, atol=1e-3)
    # the legacy names are the same maps
    np.testing.assert_allclose(t.apply_points(points), t.points_to_model(points), atol=1e-4)
    np.testing.assert_allclose(t.invert_points(t.apply_points(points)), points, atol=1e-3)


def test_frame_to_model_moves_a_bright_pixel_where_its_point_goes():
    # a 3x3 bright block in a portrait frame: its centroid after the transform is the mapped centre
    frame = np.zeros((301, 200, 3), np.uint8)
    frame[179:182, 59:62] = 255
    for mode in ("center_crop", "letterbox", "resize"):
        t = FrameTransform(width=200, height=301, mode=mode)
        out = t.frame_to_model(frame)
        assert out.shape == (256, 256, 3) and out.dtype == np.uint8
        weight = out[..., 0].astype(np.float64)
        ys, xs = np.nonzero(weight)
        w = weight[ys, xs]
        centroid = np.array([(xs + 0.5) @ w, (ys + 0.5) @ w]) / w.sum()
        np.testing.assert_allclose(t.points_to_model(np.array([60.5, 180.5])), centroid, atol=0.6)


def test_letterbox_pad_is_black_outside_the_content_box():
    t = FrameTransform(width=640, height=480, mode="letterbox")
    out = t(np.full((480, 640, 3), 200, np.uint8))
    x0, y0, x1, y1 = (int(v) for v in t.content_box())
    assert (x0, y0, x1, y1) == (0, 32, 256, 224)
    assert (out[:y0] == 0).all() and (out[y1:] == 0).all() and (out[y0:y1] == 200).all()


def test_bad_input_is_refused_with_a_clear_error():
    t = FrameTransform(width=640, height=480)
    with pytest.raises(ValueError, match="640x480"):
        t.frame_to_model(np.zeros((480, 641, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        t.points_to_model(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="mode"):
        FrameTransform(width=10, height=10, mode="zoom")
    with pytest.raises(ValueError, match="positive"):
        FrameTransform(width=0, height=10)


def test_json_round_trip_and_one_implementation():
    t = FrameTransform(width=200, height=301, mode="letterbox", size=128)
    data = json.loads(json.dumps(t.to_dict()))
    assert FrameTransform.from_dict(data) == t
    assert data["scale"] == pytest.approx(list(t.affine[:2])) and data["offset"] == pytest.approx(list(t.affine[2:]))
    assert VideoFrameTransform is FrameTransform  # ingestion uses the same class
    assert FrameTransform.for_frame(np.zeros((301, 200, 3)), mode="letterbox", size=128) == t
