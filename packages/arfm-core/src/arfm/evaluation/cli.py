"""``arfm eval``: score track predictors on a labelled dataset — Tables 1 and 5 (paper §4.2).

Example::

    arfm eval --data /tmp/arfm_labelled --out eval_out \\
        --predictors arfm:runs/flow/checkpoint,no-movement,regression:runs/reg/checkpoint

prints the markdown table and writes ``table.md``, ``table.csv``, ``probabilistic.csv``,
``results.json`` and the plots into ``--out``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import tyro

from arfm.data.batch import TrackWindow
from arfm.evaluation.metrics import DELTA_THRESHOLDS, PAPER_SAMPLES, TABLE_K_VALUES
from arfm.evaluation.protocol import EvalProtocol, EvalResult, evaluate
from arfm.evaluation.report import write_report
from arfm.predictors import TrackPredictor, build_predictor


@dataclass
class EvalConfig:
    """Options of ``arfm eval`` (defaults: the paper's protocol).

    Attributes:
        data: root of a labelled dataset written by ``arfm label``, or a folder (or file) of
            HF ``datasets`` arrow shards in the official evaluation sets' encoding (the official
            UCF-101 set; :mod:`arfm.data.hf_arrow`).
        predictors: comma-separated predictor specs, in table order (``arfm:<ckpt>``, ``no-movement``,
            ``regression:<ckpt>``, ``chronos-relative:<dir>``, ``frames-to-tracks:<dir>``, ``gt``).
        out: folder for the table, CSV, JSON and plots.
        horizon: future steps predicted and scored after one conditioning frame (paper: 50).
        num_points: tracks per clip (paper: 100).
        min_movement: evaluation filter: mean summed movement of the top tracks, pixels (paper: 50).
        split: dataset split to evaluate (``"all"``, ``"train"`` or ``"val"``).
        starts: first frame (the conditioning frame) of the windows taken from every clip; with
            several starts, window ids are ``<clip_id>@<start>``.
        paper_samples: samples behind the paper's numbers (best for ``δ``, mean for ADE).
        k_values: K of the best-of-K curves. A stochastic predictor is drawn ``max(K)`` times per
            clip and the cost grows linearly with it: the default (1, 2, 5) is what Table 1 needs;
            ``--k-values 1 2 5 10 20`` gives the full curve at four times the cost.
        thresholds: pixel thresholds of ``<δ^x``.
        max_clips: evaluate at most this many clips (``0`` = all).
        seed: seed of the per-clip RNG.
        num_qualitative: clips drawn in the qualitative grid.
        title: heading of the markdown table.
        plots: write the PNG figures.
    """

    data: Path
    predictors: str = "no-movement"
    out: Path = Path("eval_out")
    horizon: int = 50
    num_points: int = 100
    min_movement: float = 50.0
    split: str = "all"
    starts: tuple[int, ...] = (0,)
    paper_samples: int = PAPER_SAMPLES
    k_values: tuple[int, ...] = TABLE_K_VALUES
    thresholds: tuple[int, ...] = DELTA_THRESHOLDS
    max_clips: int = 0
    seed: int = 0
    num_qualitative: int = 4
    title: str = "Track prediction"
    plots: bool = True

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        specs = self.specs
        if not specs:
            raise ValueError("invalid EvalConfig field 'predictors': give at least one predictor spec")
        if len(set(specs)) != len(specs):
            raise ValueError(f"invalid EvalConfig field 'predictors': a spec appears twice in {self.predictors!r}")
        if self.num_points < 1:
            raise ValueError(f"invalid EvalConfig field 'num_points': must be >= 1, got {self.num_points}")
        if self.min_movement < 0:
            raise ValueError(f"invalid EvalConfig field 'min_movement': must be >= 0, got {self.min_movement}")
        self.starts = tuple(int(s) for s in self.starts)
        if not self.starts or min(self.starts) < 0 or len(set(self.starts)) != len(self.starts):
            raise ValueError(f"invalid EvalConfig field 'starts': need distinct frame indices >= 0, got {self.starts}")
        if self.max_clips < 0:
            raise ValueError(f"invalid EvalConfig field 'max_clips': must be >= 0, got {self.max_clips}")
        self.protocol()  # validates horizon, samples, thresholds and K

    @property
    def specs(self) -> list[str]:
        """Predictor specs in table order."""
        return [s.strip() for s in self.predictors.split(",") if s.strip()]

    def protocol(self) -> EvalProtocol:
        """The :class:`EvalProtocol` these options describe."""
        return EvalProtocol(
            horizon=self.horizon,
            paper_samples=self.paper_samples,
            thresholds=self.thresholds,
            k_values=self.k_values,
            seed=self.seed,
            num_qualitative=self.num_qualitative,
        )


def labelled_windows(config: EvalConfig, dropped: dict[str, str] | None = None) -> Iterator[tuple[str, TrackWindow]]:
    """Evaluation windows of ``config.data`` through the dataset reader's evaluation filter;
    ``dropped`` receives ``{clip_id: reason}`` of every clip the filter leaves out."""
    if not config.data.exists():
        raise FileNotFoundError(f"labelled dataset {str(config.data)!r} does not exist: build one with `arfm label <videos> <out>`")
    from arfm.data.dataset import eval_windows  # the readers are only needed here
    from arfm.data.hf_arrow import open_eval_dataset

    dataset = open_eval_dataset(config.data, split=config.split)  # a labelled root or official arrow shards

    def windows() -> Iterator[tuple[str, TrackWindow]]:
        name = (lambda clip_id, start: f"{clip_id}@{start}") if len(config.starts) > 1 else (lambda clip_id, start: clip_id)
        for start in config.starts:
            left_out: dict[str, str] = {}
            for clip_id, window in eval_windows(
                dataset, num_points=config.num_points, horizon=config.horizon, min_movement=config.min_movement, start=start, dropped=left_out
            ):
                yield name(clip_id, start), window
            if dropped is not None:
                dropped.update({name(clip_id, start): reason for clip_id, reason in left_out.items()})

    return itertools.islice(windows(), config.max_clips) if config.max_clips else windows()


def run_eval(
    config: EvalConfig,
    windows: Iterable[tuple[str, TrackWindow]] | None = None,
    predictors: dict[str, TrackPredictor] | None = None,
) -> tuple[EvalResult, dict[str, Path]]:
    """Evaluate, write every output file, and return the result and the paths written.

    Args:
        config: options.
        windows: evaluation windows; by default read from ``config.data``.
        predictors: already built predictors by spec; by default built from ``config.predictors``.
    """
    predictors = predictors or {spec: build_predictor(spec) for spec in config.specs}
    dropped: dict[str, str] = {}
    windows = labelled_windows(config, dropped) if windows is None else windows
    result = evaluate(predictors, windows, config.protocol(), dropped=dropped)
    paths = write_report(result, config.out, config.title)
    if config.plots:
        from arfm.evaluation.plots import write_plots  # matplotlib only when plotting

        paths.update(write_plots(result, config.out))
    return result, paths


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``arfm eval``."""
    config = tyro.cli(EvalConfig, args=argv, prog="arfm eval", description=__doc__)
    _, paths = run_eval(config)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    from arfm.errors import run_cli

    run_cli(main, "arfm eval")
