"""Build the embedded CHOIS dataset from real CMU mocap, in FullBodyManipulation's format (§4.3).

FullBodyManipulation (OMOMO) is licence-gated, so the default that runs here is made from the CMU
BVH clips in ``shared/data/mocap``:

1. **Body.** Each clip is read (:mod:`.bvh`), resampled to 30 fps, converted from Y-up file units
   to Z-up metres and mapped onto the 24-joint skeleton (:mod:`..skeleton`). This is a
   *joint-based proxy* of SMPL-X (no SMPL-X shape, no mesh): rest bone offsets are measured
   on the mocap skeleton and stored as ``rest_offsets``; ``root_orient``/``pose_body`` hold the
   axis-angle rotations so forward kinematics reproduces the mocap joints.
2. **Object.** A box sized like the FullBodyManipulation furniture rests on the floor. At a grasp
   frame its top face is put under the hands; from then until the release frame it moves rigidly
   with the hands (translation of the hands' midpoint in x-y, yaw of the body), its base staying
   on the floor like a pushed floor lamp or stand; after release it rests where it was left.
3. **Labels.** Hand contact = hand point within 5 cm of the box surface (exact box SDF); foot
   contact = low and slow foot; a caption from the object's displacement in the body frame.

Several variants (object, grasp interval) are made per clip. Subjects follow the dataset's
split: clips of CMU subjects 7 and 131 become ``sub16``/``sub17`` (test), the rest train.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import roma
import torch
import trimesh
from tqdm import tqdm

from integrations.chois.data.bvh import parse_bvh
from integrations.chois.objects import box_mesh, box_sdf
from integrations.chois.skeleton import FOOT_JOINTS, HAND_JOINTS, PARENTS, forward_kinematics, global_to_local

BODY_MODEL_NAME = "proxy-skeleton (CMU mocap joints; SMPL-X absent)"
CONTACT_THRESHOLD = 0.05  # metres, as the Table 2 contact metrics
FPS = 30

CMU_31 = (
    "Hips", "LeftHip", "RightHip", "lowerback", "LeftKnee", "RightKnee", "Chest", "LeftAnkle", "RightAnkle",
    "Chest2", "LeftToe", "RightToe", "Neck", "LeftCollar", "RightCollar", "Head", "LeftShoulder",
    "RightShoulder", "LeftElbow", "RightElbow", "LeftWrist", "RightWrist", "LFingers", "RFingers",
)  # fmt: skip
CC_RIG = (
    "CC_Base_Pelvis", "CC_Base_L_Thigh", "CC_Base_R_Thigh", "CC_Base_Waist", "CC_Base_L_Calf", "CC_Base_R_Calf",
    "CC_Base_Spine01", "CC_Base_L_Foot", "CC_Base_R_Foot", "CC_Base_Spine02", "CC_Base_L_ToeBase",
    "CC_Base_R_ToeBase", "CC_Base_NeckTwist01", "CC_Base_L_Clavicle", "CC_Base_R_Clavicle", "CC_Base_Head",
    "CC_Base_L_Upperarm", "CC_Base_R_Upperarm", "CC_Base_L_Forearm", "CC_Base_R_Forearm", "CC_Base_L_Hand",
    "CC_Base_R_Hand", "CC_Base_L_Mid1", "CC_Base_R_Mid1",
)  # fmt: skip
# Rigs we know: joint names for the 24 joints, metres per file unit, whether frame 0 is a T-pose.
RIGS = {"cmu31": (CMU_31, 0.056444, False), "ccrig": (CC_RIG, 0.01, True)}
TEST_CMU_SUBJECTS = {7: 16, 131: 17}
OBJECTS = {  # name -> half extents (x, y) in metres; height is set by the grasp
    "floorlamp": (0.15, 0.15),
    "clothesstand": (0.25, 0.2),
    "largebox": (0.3, 0.25),
    "smalltable": (0.35, 0.3),
}
Y_UP_TO_Z_UP = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)


def mocap_to_skeleton(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a BVH clip as the 24-joint proxy skeleton at 30 fps, Z-up, metres, floor at z = 0.

    Returns:
        ``positions (T, 24, 3)``, ``global_rot (T, 24, 3, 3)`` (identity in the rig's rest
        pose), ``rest_offsets (24, 3)`` (offset from the parent in the rest pose, row 0 zero).
    """
    motion = parse_bvh(path)
    names = set(motion.names)
    rig = next((key for key, (joints, _, _) in RIGS.items() if set(joints) <= names), None)
    if rig is None:
        raise ValueError(f"{path}: unknown skeleton; supported rigs: {', '.join(RIGS)} (joint names in integrations/chois/data/mocap_to_fbm.py)")
    joint_names, unit, tpose_first = RIGS[rig]
    idx = [motion.index(n) for n in joint_names]
    step = max(1, round(1.0 / (FPS * motion.frame_time)))
    first = 1 if tpose_first else 0
    pos, rot = motion.forward_kinematics(np.arange(first, motion.num_frames, step))
    pos, rot = pos[:, idx] * unit, rot[:, idx]
    if tpose_first:
        _, bind = motion.forward_kinematics(np.arange(0, 1))
        bind = bind[0, idx]
    else:
        bind = torch.eye(3, dtype=torch.float64).expand(24, 3, 3)
    # offsets measured in each parent's bone frame (median over frames: robust to twist bones)
    offsets = torch.zeros(24, 3, dtype=torch.float64)
    for j in range(1, 24):
        p = PARENTS[j]
        local = (rot[:, p].transpose(-1, -2) @ (pos[:, j] - pos[:, p])[..., None])[..., 0]
        offsets[j] = bind[p] @ local.median(dim=0).values
    a = Y_UP_TO_Z_UP
    global_rot = a @ rot @ bind.transpose(-1, -2) @ a.T
    rest_offsets = offsets @ a.T
    root = pos[:, 0] @ a.T
    positions = forward_kinematics(root, global_rot, rest_offsets)
    feet = positions[:, list(FOOT_JOINTS), 2].min(dim=1).values
    floor = torch.quantile(feet, 0.02) - 0.02  # foot joints sit ~2 cm above the sole
    root[:, 2] -= floor
    positions[..., 2] -= floor
    return {"positions": positions, "global_rot": global_rot, "rest_offsets": rest_offsets, "root": root, "rig": rig}


def heading(positions: torch.Tensor) -> torch.Tensor:
    """Yaw (radians, about +z) of the body's forward direction per frame, from the hip axis."""
    left = positions[:, 1] - positions[:, 2]
    forward = torch.linalg.cross(left, torch.tensor([0.0, 0.0, 1.0], dtype=left.dtype).expand_as(left))
    return torch.atan2(forward[:, 1], forward[:, 0])


def yaw_matrix(yaw: torch.Tensor) -> torch.Tensor:
    """``(T,)`` -> ``(T, 3, 3)`` rotations about +z."""
    return roma.rotvec_to_rotmat(torch.stack([torch.zeros_like(yaw), torch.zeros_like(yaw), yaw], dim=-1))


def synthesize_interaction(positions: torch.Tensor, object_name: str, rng: np.random.Generator) -> dict:
    """Procedural object interaction for one body motion (see module docstring, step 2)."""
    num = positions.shape[0]
    hands = positions[:, list(HAND_JOINTS)]  # (T, 2, 3)
    mid = hands.mean(dim=1)
    t_grasp = int(rng.integers(int(0.1 * num), max(int(0.1 * num) + 1, int(0.4 * num))))
    t_release = int(rng.integers(min(num - 1, t_grasp + max(10, int(0.3 * num))), num))
    yaw = heading(positions)
    half_xy = OBJECTS[object_name]
    # the hands' separation along the body's left axis must fit on the top face
    half_x = max(half_xy[0], 0.5 * float((hands[t_grasp, 0] - hands[t_grasp, 1]).norm()) + 0.05)
    height = float(mid[t_grasp, 2])
    half = torch.tensor([half_x, half_xy[1], height / 2], dtype=torch.float64)
    yaw0 = yaw[t_grasp] - math.pi / 2  # the box's x axis along the body's left-right axis
    obj_yaw = torch.full((num,), float(yaw0), dtype=torch.float64)
    centre = torch.zeros(num, 3, dtype=torch.float64)
    centre[:, 2] = height / 2
    centre[:, :2] = mid[t_grasp, :2]
    carried = slice(t_grasp, t_release + 1)
    obj_yaw[carried] = yaw0 + (yaw[carried] - yaw[t_grasp])
    centre[carried, :2] = mid[carried, :2]
    centre[t_release + 1 :] = centre[t_release]
    obj_yaw[t_release + 1 :] = obj_yaw[t_release]
    obj_rot = yaw_matrix(obj_yaw)
    hand_sdf = box_sdf(hands, half, obj_rot, centre)  # (T, 2)
    contact = (hand_sdf < CONTACT_THRESHOLD) & (hand_sdf > -CONTACT_THRESHOLD)
    contact[: t_grasp] = False
    contact[t_release + 1 :] = False
    return {"half_extents": half, "obj_rot": obj_rot, "obj_com_pos": centre, "hand_contact": contact, "t_grasp": t_grasp, "t_release": t_release}


def foot_contacts(positions: torch.Tensor) -> torch.Tensor:
    """``(T, 2)`` left/right foot contact: a toe or ankle below 10 cm moving under 1 cm per frame."""
    feet = positions[:, list(FOOT_JOINTS)]  # (T, 4, 3): l-ankle, r-ankle, l-toe, r-toe
    speed = torch.zeros(feet.shape[:2], dtype=feet.dtype)
    speed[1:] = (feet[1:] - feet[:-1]).norm(dim=-1)
    speed[0] = speed[1]
    on = (feet[..., 2] < 0.10) & (speed < 0.01)
    return torch.stack([on[:, 0] | on[:, 2], on[:, 1] | on[:, 3]], dim=-1)


def caption_for(positions: torch.Tensor, centre: torch.Tensor, object_name: str, t_grasp: int, t_release: int) -> str:
    """Describe the carried object's displacement in the body's frame at the grasp."""
    disp = (centre[t_release] - centre[t_grasp])[:2]
    yaw = heading(positions)[t_grasp]
    forward = float(disp[0] * torch.cos(yaw) + disp[1] * torch.sin(yaw))
    left = float(-disp[0] * torch.sin(yaw) + disp[1] * torch.cos(yaw))
    pretty = {"floorlamp": "floor lamp", "clothesstand": "clothes stand", "largebox": "large box", "smalltable": "small table"}[object_name]
    if max(abs(forward), abs(left)) < 0.3:
        return f"Hold the {pretty} in place, then let it go."
    direction = ("forward" if forward > 0 else "backward") if abs(forward) >= abs(left) else ("to the left" if left > 0 else "to the right")
    return f"Push the {pretty} {direction} and let it go."


def _subject_of(path: Path) -> int:
    stem = path.stem.split("_")
    cmu = int(stem[-2]) if len(stem) >= 2 else 0
    return TEST_CMU_SUBJECTS.get(cmu, cmu if 1 <= cmu <= 15 else 1 + cmu % 15)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_mocap_dataset(out_dir: str | Path, mocap_dir: str | Path, variants: int = 2, seed: int = 0) -> Path:
    """Write the embedded dataset in FullBodyManipulation's layout.

    Files: ``{train,test}_diffusion_manip_seq_joints24.p`` (joblib dicts of sequences),
    ``captured_objects/<object>_<seq>.obj`` (rest meshes), ``contact_labels/<seq>.npy``
    (``(T, 4)`` bool: hands, feet) and ``omomo_text_anno_json_data/<seq>.json`` (captions).

    Returns:
        ``out_dir``.
    """
    import joblib

    out_dir, mocap_dir = Path(out_dir), Path(mocap_dir)
    clips = sorted(mocap_dir.rglob("*.bvh"))
    if not clips:
        raise FileNotFoundError(f"no .bvh files under {mocap_dir}")
    rng = np.random.default_rng(seed)
    splits: dict[str, dict[int, dict]] = {"train": {}, "test": {}}
    for clip in tqdm(clips, desc="mocap -> FullBodyManipulation format"):
        skel = mocap_to_skeleton(clip)
        pos = skel["positions"]
        local = global_to_local(skel["global_rot"][:, :22])
        rotvec = roma.rotmat_to_rotvec(local)  # (T, 22, 3)
        subject = _subject_of(clip)
        for v in range(variants):
            object_name = list(OBJECTS)[int(rng.integers(len(OBJECTS)))]
            inter = synthesize_interaction(pos, object_name, rng)
            seq_name = f"sub{subject}_{object_name}_{clip.stem}_{v:02d}"
            contacts = torch.cat([inter["hand_contact"], foot_contacts(pos)], dim=1).numpy()
            caption = caption_for(pos, inter["obj_com_pos"], object_name, inter["t_grasp"], inter["t_release"])
            verts, faces = box_mesh(inter["half_extents"])
            mesh_path = out_dir / "captured_objects" / f"{object_name}_{seq_name}.obj"
            _atomic_write(mesh_path, lambda tmp: trimesh.Trimesh(verts.numpy(), faces.numpy()).export(tmp, file_type="obj"))
            _atomic_write(out_dir / "contact_labels" / f"{seq_name}.npy", lambda tmp: np.save(open(tmp, "wb"), contacts))
            _atomic_write(out_dir / "omomo_text_anno_json_data" / f"{seq_name}.json", lambda tmp: Path(tmp).write_text(json.dumps({seq_name: caption})))
            num = pos.shape[0]
            split = "test" if subject in (16, 17) else "train"
            splits[split][len(splits[split])] = {
                "seq_name": seq_name,
                "betas": np.zeros((1, 16), dtype=np.float32),
                "gender": "neutral",
                "trans": (skel["root"] - skel["rest_offsets"][0]).numpy().astype(np.float32),
                "root_orient": rotvec[:, 0].numpy().astype(np.float32),
                "pose_body": rotvec[:, 1:].reshape(num, 63).numpy().astype(np.float32),
                "rest_offsets": skel["rest_offsets"].numpy().astype(np.float32),
                "trans2joint": np.zeros(3, dtype=np.float32),
                "obj_trans": inter["obj_com_pos"].numpy().astype(np.float32)[..., None],
                "obj_rot": inter["obj_rot"].numpy().astype(np.float32),
                "obj_scale": np.ones(num, dtype=np.float32),
                "obj_com_pos": inter["obj_com_pos"].numpy().astype(np.float32),
                "body_model": BODY_MODEL_NAME,
                "source": f"CMU mocap {clip.name} (mocap.cs.cmu.edu), object synthesised",
            }
    for split, data in splits.items():
        _atomic_write(out_dir / f"{split}_diffusion_manip_seq_joints24.p", lambda tmp: joblib.dump(data, tmp))
    return out_dir
