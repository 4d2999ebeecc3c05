"""Data: BVH reader, mocap -> FullBodyManipulation conversion, the FBM loader, tracks."""

from __future__ import annotations

import math
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
import trimesh

from integrations.chois.configuration_chois import tiny_chois_config
from integrations.chois.data.bvh import parse_bvh
from integrations.chois.data.camera import Camera, project_tracks
from integrations.chois.data.fbm_dataset import FbmWindowDataset, load_sequences, sequence_body
from integrations.chois.data.mocap_to_fbm import mocap_to_skeleton, synthesize_interaction
from integrations.chois.objects import box_mesh
from integrations.chois.representation import pack_motion, unpack_motion

TINY_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Arm
  {
    OFFSET 1 0 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 1 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
0 0 0 0 0 0 0 0 0
1 2 3 90 0 0 0 0 0
"""


def test_bvh_forward_kinematics_by_hand(tmp_path: Path):
    path = tmp_path / "tiny.bvh"
    path.write_text(TINY_BVH)
    motion = parse_bvh(path)
    assert motion.names == ["Hips", "Arm"] and motion.num_frames == 2 and motion.frame_time == 0.5
    pos, rot = motion.forward_kinematics()
    assert torch.allclose(pos[0, 1], torch.tensor([1.0, 0, 0], dtype=torch.float64))
    # root moved to (1, 2, 3) and turned 90 deg about z: the arm offset (1, 0, 0) becomes (0, 1, 0)
    assert torch.allclose(pos[1, 1], torch.tensor([1.0, 3.0, 3.0], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(rot[1, 1] @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0.0, 1.0, 0], dtype=torch.float64), atol=1e-9)


def test_bvh_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="missing.bvh"):
        parse_bvh(tmp_path / "missing.bvh")
    bad = tmp_path / "bad.bvh"
    bad.write_text(TINY_BVH.replace("1 2 3 90 0 0 0 0 0", "1 2 3"))
    with pytest.raises(ValueError, match="bad.bvh.*18 values"):
        parse_bvh(bad)
    bad.write_text("not a bvh")
    with pytest.raises(ValueError, match="HIERARCHY"):
        parse_bvh(bad)


def test_real_mocap_to_skeleton(shared_data: Path):
    skel = mocap_to_skeleton(shared_data / "mocap" / "cmu_131_01.bvh")
    pos = skel["positions"]
    assert pos.shape == (math.ceil(994 / 4), 24, 3)  # 120 Hz -> 30 fps
    feet = pos[:, [7, 8, 10, 11], 2].min(dim=1).values
    assert 0.0 <= float(torch.quantile(feet, 0.02)) <= 0.05  # floor at z = 0
    assert 0.7 < float(pos[:, 0, 2].median()) < 1.1  # pelvis height in metres
    assert float(pos[:, 15, 2].median()) > float(pos[:, 0, 2].median())  # Z up: head above pelvis


def test_interaction_is_physically_consistent(shared_data: Path):
    pos = mocap_to_skeleton(shared_data / "mocap" / "cmu-ccrig" / "006_02.bvh")["positions"]
    inter = synthesize_interaction(pos, "largebox", np.random.default_rng(0))
    com, rot, half = inter["obj_com_pos"], inter["obj_rot"], inter["half_extents"]
    tg, tr = inter["t_grasp"], inter["t_release"]
    assert torch.allclose(com[:, 2], half[2].expand(len(com)))  # base on the floor in every frame
    assert torch.allclose(com[:tg], com[0].expand(tg, 3)) and torch.allclose(com[tr:], com[tr].expand(len(com) - tr, 3))
    hand_mid = pos[:, [22, 23]].mean(dim=1)
    # carried rigidly: the object's x-y follows the hands' midpoint during the interaction
    assert torch.allclose(com[tg : tr + 1, :2] - hand_mid[tg : tr + 1, :2], torch.zeros(tr + 1 - tg, 2, dtype=com.dtype), atol=1e-9)
    assert torch.allclose(torch.det(rot), torch.ones(len(rot), dtype=rot.dtype))
    contact = inter["hand_contact"]
    assert not contact[:tg].any() and not contact[tr + 1 :].any() and contact[tg].all()  # grasp frame: hands on the top face


def _write_fbm(root: Path, subjects=(3, 16), frames: int = 45, with_offsets: bool = True) -> None:
    seqs = {}
    for i, sub in enumerate(subjects):
        name = f"sub{sub}_box_{i:03d}"
        offsets = np.zeros((24, 3), dtype=np.float32)
        offsets[1:, 2] = -0.05  # every bone 5 cm "down" from its parent
        seq = {
            "seq_name": name, "betas": np.zeros((1, 16), np.float32), "gender": "male",
            "trans": np.stack([np.linspace(0, 1, frames), np.zeros(frames), np.full(frames, 1.0)], 1).astype(np.float32),
            "root_orient": np.zeros((frames, 3), np.float32), "pose_body": np.zeros((frames, 63), np.float32),
            "obj_trans": np.tile(np.array([[2.0], [0.0], [0.2]], np.float32), (frames, 1, 1)),
            "obj_rot": np.tile(np.eye(3, dtype=np.float32), (frames, 1, 1)), "obj_scale": np.ones(frames, np.float32),
            "obj_com_pos": np.tile(np.array([2.0, 0.0, 0.2], np.float32), (frames, 1)),
        }  # fmt: skip
        if with_offsets:
            seq["rest_offsets"] = offsets
        seqs[i] = seq
    for split in ("train", "test"):
        joblib.dump(seqs, root / f"{split}_diffusion_manip_seq_joints24.p")
    verts, faces = box_mesh(torch.tensor([0.2, 0.2, 0.2]))
    (root / "captured_objects").mkdir(exist_ok=True)
    trimesh.Trimesh(verts.numpy(), faces.numpy()).export(root / "captured_objects" / "box_cleaned_simplified.obj")


def test_fbm_loader_on_written_files(tmp_path: Path):
    _write_fbm(tmp_path)
    cfg = tiny_chois_config()
    assert [s["seq_name"] for s in load_sequences(tmp_path, "train")] == ["sub3_box_000"]
    assert [s["seq_name"] for s in load_sequences(tmp_path, "test")] == ["sub16_box_001"]
    ds = FbmWindowDataset(tmp_path, "test", cfg, render=True)
    assert len(ds) == 1  # 45 frames, 40-frame windows, test stride = window
    item = ds[0]
    assert item["motion"].shape == (40, 220)
    assert item["bps"].shape == (3 * cfg.bps_points,)
    assert item["tracks"].shape == (24 + 16, cfg.track_horizon + 1, 2) and item["track_visible"].dtype == torch.bool
    assert item["frame0"].shape == (3, 256, 256)
    parts = unpack_motion(item["motion"].double())
    # canonical window: the first-frame pelvis is above the origin; offsets put the neck-chain 5 cm per bone down
    assert torch.allclose(parts["joints"][0, 0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(parts["joints"][0, 15, 2], torch.tensor(1.0 - 5 * 0.05, dtype=torch.float64), atol=1e-6)  # head: 5 bones (3, 6, 9, 12, 15) below
    assert torch.allclose(parts["obj_com"][0], torch.tensor([2.0, 0.0, 0.2], dtype=torch.float64), atol=1e-6)
    # no contact labels file: hands are far from the box -> no hand contact
    assert not parts["contacts"][:, :2].any()


def test_fbm_loader_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="train_diffusion_manip_seq_joints24.p"):
        load_sequences(tmp_path, "train")
    (tmp_path / "train_diffusion_manip_seq_joints24.p").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read"):
        load_sequences(tmp_path, "train")
    joblib.dump({0: {"seq_name": "sub1_box_000"}}, tmp_path / "train_diffusion_manip_seq_joints24.p")
    with pytest.raises(ValueError, match="lacks keys"):
        load_sequences(tmp_path, "train")
    _write_fbm(tmp_path, with_offsets=False)
    seq = load_sequences(tmp_path, "train")[0]
    with pytest.raises(FileNotFoundError, match="SMPLX_MALE.npz"):
        sequence_body(seq, None)
    with pytest.raises(FileNotFoundError, match=r"smplx_models/SMPLX_MALE\.npz"):
        sequence_body(seq, tmp_path / "smplx_models")


def test_pack_unpack_round_trip():
    gen = torch.Generator().manual_seed(0)
    import roma

    rot = roma.random_rotmat((5, 22), generator=gen).double()
    obj_rot = roma.random_rotmat(5, generator=gen).double()
    motion = pack_motion(torch.randn(5, 3, dtype=torch.float64), obj_rot, torch.randn(5, 24, 3, dtype=torch.float64), rot, torch.ones(5, 4, dtype=torch.float64))
    parts = unpack_motion(motion)
    assert motion.shape == (5, 220)
    assert torch.allclose(parts["global_rot"], rot, atol=1e-9) and torch.allclose(parts["obj_rot"], obj_rot, atol=1e-9)


def test_track_projection_and_depth_test():
    cam = Camera(eye=torch.tensor([0.0, -5.0, 1.0]), target=torch.tensor([0.0, 0.0, 1.0]))
    half = torch.tensor([0.5, 0.5, 0.5])
    centre = torch.tensor([[0.0, -2.0, 1.0]])  # box between the camera and the joints
    joints = torch.zeros(1, 24, 3)
    joints[0, :, 2] = 1.0
    joints[0, 1] = torch.tensor([1.5, 0.0, 1.0])  # off to the side: in view, not behind the box
    obj_pts = torch.tensor([[[0.0, -2.5, 1.0], [0.0, -1.5, 1.0]]])  # front face centre, back face centre
    tracks, visible = project_tracks(cam, joints, obj_pts, half, torch.eye(3)[None], centre)
    assert torch.allclose(tracks[0, 0], torch.tensor([128.0, 128.0]), atol=1e-4)  # target projects to the centre
    assert not visible[0, 0] and visible[1, 0]  # pelvis hidden by the box, the side joint seen
    assert visible[24, 0] and not visible[25, 0]  # the front face is seen, the back face is not


def test_build_embedded_dataset_from_real_mocap(tmp_path: Path, shared_data: Path):
    import json
    import shutil

    from integrations.chois.data.mocap_to_fbm import BODY_MODEL_NAME, build_mocap_dataset

    mocap = tmp_path / "mocap"
    mocap.mkdir()
    shutil.copy(shared_data / "mocap" / "cmu_131_01.bvh", mocap)  # CMU subject 131 -> sub17 (test)
    shutil.copy(shared_data / "mocap" / "cmu-ccrig" / "006_04.bvh", mocap)  # subject 6 -> train
    out = build_mocap_dataset(tmp_path / "fbm", mocap, variants=1)
    train, test = load_sequences(out, "train"), load_sequences(out, "test")
    assert [s["seq_name"].split("_")[0] for s in train] == ["sub6"] and [s["seq_name"].split("_")[0] for s in test] == ["sub17"]
    seq = test[0]
    assert seq["body_model"] == BODY_MODEL_NAME and seq["pose_body"].shape == (len(seq["trans"]), 63)
    caption = json.loads((out / "omomo_text_anno_json_data" / f"{seq['seq_name']}.json").read_text())[seq["seq_name"]]
    assert caption.startswith(("Push the", "Hold the"))
    contacts = np.load(out / "contact_labels" / f"{seq['seq_name']}.npy")
    assert contacts.shape == (len(seq["trans"]), 4) and contacts[:, :2].any()
    # the stored parameters reproduce the mocap joints through forward kinematics
    joints, _, _, name = sequence_body(seq, None)
    ref = mocap_to_skeleton(mocap / "cmu_131_01.bvh")["positions"]
    assert name == BODY_MODEL_NAME and torch.allclose(joints, ref, atol=1e-4)
    ds = FbmWindowDataset(out, "test", tiny_chois_config())
    assert ds[0]["body_model"] == BODY_MODEL_NAME
