"""Helpers shared by the benchmark scripts: model presets, timing, peak memory, FLOPs, tables.

Benchmarks report ratios measured in one run on one machine; nothing here is asserted in tests.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import platform
import resource
import time
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from arfm.config import ModelConfig, tiny_model_config
from arfm.model import TrackShiftFlowPredictor

# CPU threads per benchmark process (BENCH_THREADS, default 1): on a small shared machine more
# threads than free cores make torch spin and distort timings by up to 10x.
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))


def build_model(preset: str, device: str = "cpu", **overrides: Any) -> TrackShiftFlowPredictor:
    """Random-weight model of a preset (``tiny`` or ``base``); the zero-initialised output layer is
    perturbed so sampled shifts are not trivially zero."""
    cfg = tiny_model_config(**overrides) if preset == "tiny" else dataclasses.replace(ModelConfig(), **overrides)
    torch.manual_seed(0)
    model = TrackShiftFlowPredictor(cfg).to(device).eval()
    with torch.no_grad():
        model.head.final.linear.weight.normal_(std=0.02)
    return model


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str = "cpu", repeats: int = 1, warmup: int = 0) -> float:
    """Median wall-clock seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call (matmuls and attention, as torch counts them)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# FlopCounterMode names modules by class; these are the fusion module's and the flow head's.
_FUSION_KEYS = ("TemporalBlock", "SpatialBlock")
_HEAD_KEYS = ("FlowMatchingHead",)


class ModuleProfile:
    """Wall-clock seconds, calls and FLOPs of the fusion module and of the flow head of a model.

    Wraps ``model.fusion.step`` and ``model.head.forward`` with timers for as long as the
    ``with`` block lasts (synchronising the GPU around each call, so the split is exact but
    the totals include the sync cost). ``flops=True`` also counts FLOPs in the same run, which
    adds per-operator dispatch overhead: use it for runs too slow to repeat (base size on a CPU).
    """

    def __init__(self, model: TrackShiftFlowPredictor, device: str, flops: bool = False) -> None:
        self.model, self.device, self.count = model, device, flops
        self.seconds = {"fusion": 0.0, "head": 0.0}
        self.calls = {"fusion": 0, "head": 0}
        self.flops: dict[str, int] = {}
        self._counter: FlopCounterMode | None = None

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            synchronize(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1
            return out

        return timed_call

    def __enter__(self) -> "ModuleProfile":
        self.model.fusion.step = self._wrap("fusion", self.model.fusion.step)
        self.model.head.forward = self._wrap("head", self.model.head.forward)
        if self.count:
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.model.fusion.step, self.model.head.forward  # back to the class methods
        if self._counter is not None:
            self._counter.__exit__(*exc)
            counts = self._counter.get_flop_counts()
            top = {k: sum(v.values()) for k, v in counts.items()}
            self.flops = {
                "total": int(self._counter.get_total_flops()),
                "fusion": int(sum(top.get(k, 0) for k in _FUSION_KEYS)),
                "head": int(sum(top.get(k, 0) for k in _HEAD_KEYS)),
            }


def _child(target: Callable[..., dict], kwargs: dict, queue: "mp.Queue") -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    result = target(**kwargs)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def in_subprocess(target: Callable[..., dict], **kwargs: Any) -> dict:
    """Run ``target(**kwargs) -> dict`` in a fresh process so its peak RSS is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, kwargs, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows of dicts -> a markdown table with the given columns."""
    def cell(v: Any) -> str:
        if not isinstance(v, float):
            return str(v)
        if v != v:
            return "n/a"
        return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    """One line naming the hardware the numbers came from."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
