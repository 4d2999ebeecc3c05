"""R_prec and FID of Table 2 (ARFM paper §4.3): a pretrained text-motion evaluator from a local path.

CHOIS scores motions with a text-motion embedding model (after Guo et al.). Its weights are not
shipped here, so the evaluator is loaded from a TorchScript file exposing
``encode_text(list[str]) -> (B, D)`` and ``encode_motion(Tensor (B, T, 220)) -> (B, D)``; without
one, R_prec and FID are reported as skipped. The metrics themselves are plain functions of
embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def load_evaluator(path: str | Path | None) -> torch.jit.ScriptModule:
    """Load a TorchScript text-motion evaluator.

    Raises:
        FileNotFoundError: naming the path (R_prec and FID are then skipped by the caller).
        ValueError: the module lacks ``encode_text`` / ``encode_motion``.
    """
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"text-motion evaluator not found at {path}: R_prec and FID need a TorchScript evaluator file "
                                "with encode_text/encode_motion (e.g. a scripted export of the CHOIS/T2M evaluator)")
    module = torch.jit.load(str(path), map_location="cpu")
    for name in ("encode_text", "encode_motion"):
        if not hasattr(module, name):
            raise ValueError(f"evaluator {path} has no method {name!r}")
    return module


def r_precision(text_emb: torch.Tensor, motion_emb: torch.Tensor, top_k: int = 3, pool: int = 32) -> float:
    """R-precision: in pools of ``pool`` pairs, how often the matching text is among the ``top_k`` nearest (Euclidean) to its motion.

    Pairs beyond the last full pool are dropped; with fewer than ``pool`` pairs a single smaller pool is used.
    """
    if text_emb.shape != motion_emb.shape or text_emb.ndim != 2:
        raise ValueError(f"r_precision needs two (B, D) embeddings of equal shape, got {tuple(text_emb.shape)} and {tuple(motion_emb.shape)}")
    count = text_emb.shape[0]
    if count < top_k:
        raise ValueError(f"r_precision needs at least top_k={top_k} pairs, got {count}")
    pool = min(pool, count)
    hits, total = 0, 0
    for start in range(0, count - pool + 1, pool):
        dist = torch.cdist(motion_emb[start : start + pool].double(), text_emb[start : start + pool].double())  # (P, P)
        rank = dist.argsort(dim=1)[:, :top_k]
        hits += int((rank == torch.arange(pool)[:, None]).any(dim=1).sum())
        total += pool
    return hits / total


def frechet_distance(real: torch.Tensor, generated: torch.Tensor) -> float:
    """FID between two embedding sets ``(N, D)``: ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^{1/2})``."""
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"frechet_distance needs (N, D) sets with the same D, got {tuple(real.shape)} and {tuple(generated.shape)}")
    if real.shape[0] < 2 or generated.shape[0] < 2:
        raise ValueError("frechet_distance needs at least 2 samples per set")
    r, g = real.double().numpy(), generated.double().numpy()
    mu_r, mu_g = r.mean(0), g.mean(0)
    s_r, s_g = np.cov(r, rowvar=False), np.cov(g, rowvar=False)
    # trace of the matrix square root of S_r S_g via the eigenvalues of sqrt(S_r) S_g sqrt(S_r) (symmetric, PSD)
    w, v = np.linalg.eigh(s_r)
    sqrt_r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(sqrt_r @ s_g @ sqrt_r)
    tr_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(((mu_r - mu_g) ** 2).sum() + np.trace(s_r) + np.trace(s_g) - 2 * tr_sqrt)
