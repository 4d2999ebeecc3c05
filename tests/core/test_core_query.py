"""Query-information predictor (paper §3.3): trains, and its queries land on moving things."""

import numpy as np
import torch

from arfm.data.synthetic import random_scene, render_frame
from arfm.query.data import SyntheticQueryDataset
from arfm.query.model import QueryInfoPredictor, collate_queries, tiny_query_config
from arfm.query.train import load_query_model, main as train_query_main


def test_item_targets_match_the_scene():
    item = SyntheticQueryDataset(length=1, horizon=8, points_per_frame=64)[0]
    assert item.frames.shape == (3, 256, 256) and item.points.shape == (64, 2)
    assert (item.movement >= 0).all() and ((item.visible_ratio >= 0) & (item.visible_ratio <= 1)).all()
    assert (item.movement > 0.5).any() and (item.movement == 0).any()  # shapes move, background does not


def test_sampled_queries_concentrate_on_moving_shapes(tmp_path):
    train_query_main(["--out", str(tmp_path / "run"), "--steps", "150", "--preset", "tiny"])
    model = load_query_model(tmp_path / "run" / "checkpoint")
    rng = np.random.default_rng(123)
    on_shape, area, moving, still = [], [], [], []
    for _ in range(4):
        scene = random_scene(rng)
        frame = torch.from_numpy(render_frame(scene, 0)).permute(2, 0, 1).float() / 255
        # the regressor ranks shape points (moving) above background points (still)
        probe = torch.rand(1, 400, 2) * 256
        movement, _ = model.predict(frame[None], probe)
        inside = np.zeros(400, bool)
        for shape in scene.shapes:
            inside |= shape.contains(probe[0].numpy(), 0)
        moving.append(movement[0, torch.from_numpy(inside)].mean().item())
        still.append(movement[0, torch.from_numpy(~inside)].mean().item())
        # temperature 1 px^2 makes the softmax follow the predicted movement sharply
        queries = model.sample_queries(frame, num_queries=50, num_candidates=800, temperature=1.0, generator=torch.Generator().manual_seed(0))
        pts = queries.numpy()
        mask = np.zeros(len(pts), bool)
        grid = np.stack(np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5), -1).reshape(-1, 2)
        cover = np.zeros(len(grid), bool)
        for shape in scene.shapes:
            mask |= shape.contains(pts, 0)
            cover |= shape.contains(grid, 0)
        on_shape.append(mask.mean())
        area.append(cover.mean())
    assert np.mean(moving) > 3 * np.mean(still), (moving, still)
    # uniform queries would land on shapes in proportion to their area
    assert np.mean(on_shape) > 2 * np.mean(area), (on_shape, area)


def test_query_model_gradients_and_shapes():
    model = QueryInfoPredictor(tiny_query_config())
    batch = collate_queries([SyntheticQueryDataset(length=2, horizon=4, points_per_frame=16)[i] for i in range(2)])
    loss = model(batch)
    loss.backward()
    assert torch.isfinite(loss)
    movement, ratio = model.predict(batch.frames, batch.points)
    assert movement.shape == ratio.shape == (2, 16)
