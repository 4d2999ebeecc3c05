"""Every command: one clear line for a user error (``--debug`` for the traceback), flags checked
before anything is written, and inputs the model would misread refused by name (issue 14)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arfm import cli
from arfm.checkpoint import load_model, save_checkpoint
from arfm.config import tiny_model_config
from arfm.data.video import read_video
from arfm.errors import check_query_points, run_cli
from arfm.model import TrackShiftFlowPredictor
from arfm.online import GivenPositionsTracker, HorizonPredictor

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    save_checkpoint(path, TrackShiftFlowPredictor(tiny_model_config(horizon=4)))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6-frame 256 x 256 GIF (decodes without any codec)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(6)]
    path = tmp_path_factory.mktemp("video") / "clip.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


# ---------------------------------------------------------------- the one-line wrapper


def failing_main(exc: BaseException):
    def main(argv: list[str]) -> None:
        raise exc

    return main


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("--fps must be >= 1\n  got 0"), "demo: error: --fps must be >= 1 got 0"),
        (FileNotFoundError("checkpoint 'x' does not exist"), "demo: error: checkpoint 'x' does not exist"),
        (KeyError("unknown track predictor 'foo'"), "demo: error: unknown track predictor 'foo'"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(capsys, exc, line):
    with pytest.raises(SystemExit) as info:
        run_cli(failing_main(exc), "demo", ["--x"], exit_on_error=True)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(line) and "--debug" in err and "Traceback" not in err


def test_debug_flag_reraises_and_is_not_passed_on():
    seen = []

    def main(argv):
        seen.append(argv)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run_cli(main, "demo", ["--a", "--debug"], exit_on_error=True)
    assert seen == [["--a"]]


def test_bugs_keep_their_traceback_and_python_callers_get_exceptions():
    with pytest.raises(TypeError):
        run_cli(failing_main(TypeError("a bug")), "demo", [], exit_on_error=True)
    with pytest.raises(ValueError):  # explicit argv: called from Python
        run_cli(failing_main(ValueError("x")), "demo", [])


def test_arfm_program_prints_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["arfm", "viz", "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "a.png")])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("arfm viz: error: labelled dataset root") and "missing" in err[0]


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy re-running an imported module
@pytest.mark.parametrize("module", ["arfm.predict", "arfm.stream", "arfm.viz", "arfm.labelling.cli", "arfm.train"])
def test_module_entry_points_print_one_line(monkeypatch, capsys, tmp_path, module):
    # `accelerate launch -m arfm.train ...` runs the module as __main__: the same wrapper applies
    missing = str(tmp_path / "nowhere")
    argv = {
        "arfm.predict": ["--checkpoint", missing, "--video", missing, "--out", str(tmp_path / "o")],
        "arfm.stream": ["--checkpoint", missing, "--video", missing, "--out", str(tmp_path / "o")],
        "arfm.viz": ["--source", missing, "--out", str(tmp_path / "o.png")],
        "arfm.labelling.cli": [missing, str(tmp_path / "out")],
        "arfm.train": ["--preset", "tiny", "--data", missing, "--out", str(tmp_path / "run"), "--steps", "1"],
    }[module]
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as info:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert info.value.code == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line]
    assert len(err) == 1 and "nowhere" in err[0] and "Traceback" not in err[0], err


@pytest.mark.slow
def test_module_entry_point_in_a_fresh_process(tmp_path):
    args = ["--checkpoint", str(tmp_path / "nowhere"), "--video", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "o")]
    run = subprocess.run([sys.executable, "-m", "arfm.predict", *args], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("arfm predict: error:") and "v.mp4" in lines[0]
    debug = subprocess.run([sys.executable, "-m", "arfm.predict", *args, "--debug"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# ---------------------------------------------------------------- flags checked first


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--horizon", "0"], "--horizon must be >= 1"),
        (["--cond-frames", "-2"], "--cond-frames must be >= 1"),
        (["--num-points", "-5"], "--num-points must be >= 1"),
        (["--num-samples", "0"], "--num-samples must be >= 1"),
        (["--start", "-5"], "--start must be >= 0"),
        (["--horizon", "100000"], "above --max-horizon 1000"),
    ],
)
def test_predict_rejects_bad_flags_before_writing(tmp_path, capsys, checkpoint, clip, flags, message):
    out = tmp_path / "pred" / "x"
    with pytest.raises(SystemExit):
        cli.main(["predict", "--checkpoint", str(checkpoint), "--video", str(clip), "--out", str(out), *flags])
    assert message in " ".join(capsys.readouterr().err.split()).replace("│", "")
    assert not out.parent.exists()


@pytest.mark.parametrize(("flags", "message"), [(["--start", "-3"], "--start must be >= 0"), (["--fps", "0"], "--fps must be a positive")])
def test_stream_rejects_bad_flags(tmp_path, capsys, checkpoint, clip, flags, message):
    with pytest.raises(SystemExit):
        cli.main(["stream", "--checkpoint", str(checkpoint), "--video", str(clip), "--out", str(tmp_path / "s"), *flags])
    assert message in " ".join(capsys.readouterr().err.split()).replace("│", "")
    assert not (tmp_path / "s.gif").exists()


def test_out_of_frame_queries_are_refused_naming_the_point(tmp_path, checkpoint, clip):
    np.save(tmp_path / "q.npy", np.array([[10.0, 10.0], [300.0, 20.0], [5.0, -1.0]], np.float32))
    with pytest.raises(ValueError, match=r"q.npy: point 1 at \(x=300, y=20\) is outside the 256x256.*2 of 3"):
        cli.main(["predict", "--checkpoint", str(checkpoint), "--video", str(clip), "--out", str(tmp_path / "p"), "--queries", str(tmp_path / "q.npy")])
    assert not (tmp_path / "p.png").exists()
    check_query_points(np.array([[0.0, 0.0], [255.9, 255.9]]), 256)  # the frame's edges are inside
    with pytest.raises(ValueError, match=r"point 0 at \(x=256, y=3\) is outside"):
        check_query_points(np.array([[256.0, 3.0]]), 256)


def test_predict_default_horizon_comes_from_the_checkpoint(tmp_path, checkpoint, clip):
    out = tmp_path / "p"
    cli.main(["predict", "--checkpoint", str(checkpoint), "--video", str(clip), "--out", str(out), "--num-points", "4"])
    assert np.load(out.with_suffix(".npz"))["tracks"].shape == (1, 4, 4, 2)


# ---------------------------------------------------------------- broken checkpoints


def test_truncated_weights_name_the_file(tmp_path, checkpoint):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"weights file .*broken/model.safetensors is corrupt or truncated"):
        load_model(broken)


@pytest.mark.parametrize(("field", "value", "path"), [("dim", "96", "model"), ("text_len", 8.5, "model.backbone"), ("objective", "magic", "model")])
def test_config_with_a_wrong_type_names_the_field(tmp_path, checkpoint, field, value, path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    meta = json.loads((broken / "config.json").read_text())
    target = meta["model"]["backbone"] if path.endswith("backbone") else meta["model"]
    target[field] = value
    (broken / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"invalid {path} config field '{field}'"):
        load_model(broken)


def test_query_checkpoint_config_with_a_wrong_type_names_the_field(tmp_path):
    from arfm.query.model import QueryInfoPredictor, tiny_query_config
    from arfm.query.train import load_query_model

    save_checkpoint(tmp_path / "query", QueryInfoPredictor(tiny_query_config()))
    meta = json.loads((tmp_path / "query" / "config.json").read_text())
    meta["model"]["hidden"] = "64"
    (tmp_path / "query" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="invalid query model config field 'hidden': expected int, got '64'"):
        load_query_model(tmp_path / "query")


# ---------------------------------------------------------------- frames of the wrong size


def test_model_and_horizon_predictor_refuse_frames_that_are_not_256(checkpoint):
    model = load_model(checkpoint)
    big = torch.rand(1, 1, 3, 480, 640)
    with pytest.raises(ValueError, match="640x480 pixels .* expects 256x256"):
        model.sample(big, torch.zeros(1, 4, 1, 2), [""], horizon=2)
    predictor = HorizonPredictor(model, horizon=2, tracker=GivenPositionsTracker())
    queries = np.array([[10.0, 10.0], [100.0, 50.0]], np.float32)
    with pytest.raises(ValueError, match="640x480 pixels .* expects 256x256"):
        predictor.reset(np.zeros((480, 640, 3), np.uint8), queries)
    predictor.reset(np.zeros((256, 256, 3), np.uint8), queries)
    with pytest.raises(ValueError, match="640x480"):
        predictor.update(np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(ValueError, match=r"point 1 at \(x=nan, y=5\) is not finite"):
        predictor.reset(np.zeros((256, 256, 3), np.uint8), np.array([[3.0, 5.0], [np.nan, 5.0]], np.float32))


# ---------------------------------------------------------------- viz outputs


def prediction_file(tmp_path: Path) -> Path:
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    tracks = np.stack([np.linspace([10, 10], [50, 30], 5), np.linspace([30, 50], [30, 10], 5)]).astype(np.float32)
    np.savez(tmp_path / "pred.npz", frames=frames, tracks=tracks[None])
    return tmp_path / "pred.npz"


def test_viz_writes_mp4(tmp_path):
    cli.main(["viz", "--source", str(prediction_file(tmp_path)), "--out", str(tmp_path / "x.mp4")])
    video = read_video(tmp_path / "x.mp4")
    assert video.frames.shape == (5, 128, 128, 3) and video.fps == pytest.approx(10.0) and video.warning == ""


def test_viz_rejects_other_suffixes(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["viz", "--source", str(prediction_file(tmp_path)), "--out", str(tmp_path / "x.jpg")])
    assert "unsupported suffix '.jpg'" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists()
