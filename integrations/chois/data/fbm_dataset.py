"""FullBodyManipulation loader: sequences -> 120-frame CHOIS windows with tracks (paper §4.3).

Reads the processed OMOMO/CHOIS files ``{train,test}_diffusion_manip_seq_joints24.p`` (joblib
dicts of sequences with ``seq_name``, ``betas``, ``gender``, ``trans``, ``root_orient``,
``pose_body``, ``obj_trans``, ``obj_rot``, ``obj_scale``, ``obj_com_pos``), the object meshes in
``captured_objects/``, contact labels in ``contact_labels/<seq>.npy`` (else derived from
geometry) and captions in ``omomo_text_anno_json_data/<seq>.json``. Subjects 1-15 train and
16-17 test (from ``sub<k>_`` in ``seq_name``).

The body comes from SMPL-X (``smplx_dir`` with ``SMPLX_{MALE,FEMALE,NEUTRAL}.npz``): the rest
joints of the shaped model give the bone offsets and forward kinematics gives the 24 joints.
Sequences that carry ``rest_offsets`` (the embedded mocap data) use those instead: a joint-based
proxy, reported as such through ``body_model``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import roma
import torch
import trimesh
from torch.utils.data import Dataset

from integrations.chois.configuration_chois import ChoisConfig
from integrations.chois.data.camera import camera_for_window, project_tracks, render_frame
from integrations.chois.data.mocap_to_fbm import CONTACT_THRESHOLD, foot_contacts, heading
from integrations.chois.objects import box_mesh, box_sdf, half_extents_from_vertices
from integrations.chois.representation import bps_basis, bps_feature, pack_motion
from integrations.chois.skeleton import HAND_JOINTS, PARENTS, SMPLX_HAND_JOINTS, forward_kinematics, local_to_global

TRAIN_SUBJECTS = range(1, 16)
TEST_SUBJECTS = (16, 17)
REQUIRED_KEYS = ("seq_name", "betas", "gender", "trans", "root_orient", "pose_body", "obj_rot", "obj_scale", "obj_com_pos")
SMPLX_URL = "https://smpl-x.is.tue.mpg.de (register, download 'SMPL-X v1.1 NPZ')"
TRACK_OBJECT_POINTS = 16


def load_sequences(data_root: str | Path, split: str) -> list[dict]:
    """Read ``<split>_diffusion_manip_seq_joints24.p`` and keep the split's subjects.

    Raises:
        FileNotFoundError: the file is missing. ValueError: corrupt file or missing keys.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = Path(data_root) / f"{split}_diffusion_manip_seq_joints24.p"
    if not path.is_file():
        raise FileNotFoundError(f"FullBodyManipulation file not found: {path} (build the embedded default with `python integrations/chois/train.py --build-data`)")
    try:
        import joblib

        data = joblib.load(path)
    except ImportError:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    except Exception as exc:  # joblib raises several types on corrupt input
        raise ValueError(f"{path}: cannot be read as a joblib/pickle file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty dict of sequences, got {type(data).__name__}")
    subjects = TRAIN_SUBJECTS if split == "train" else TEST_SUBJECTS
    out = []
    for key, seq in data.items():
        missing = [k for k in REQUIRED_KEYS if k not in seq]
        if missing:
            raise ValueError(f"{path}: sequence {key!r} lacks keys {missing}")
        subject = int(str(seq["seq_name"]).split("_")[0].removeprefix("sub"))
        if subject in subjects:
            out.append(seq)
    if not out:
        raise ValueError(f"{path}: no sequences of subjects {list(subjects)}")
    return out


def smplx_rest_offsets(smplx_dir: str | Path, gender: str, betas: np.ndarray) -> torch.Tensor:
    """Bone offsets ``(24, 3)`` of the shaped SMPL-X rest pose (row 0: the pelvis rest position).

    Raises:
        FileNotFoundError: naming the missing ``SMPLX_<GENDER>.npz`` and where to obtain it.
    """
    path = Path(smplx_dir) / f"SMPLX_{str(gender).upper()}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"SMPL-X model file missing: {path}. The body model is licence-gated; obtain it from {SMPLX_URL} and pass its folder as smplx_dir")
    import smplx

    betas_t = torch.as_tensor(np.asarray(betas, dtype=np.float32)).reshape(1, -1)
    model = smplx.create(str(path), model_type="smplx", gender=str(gender), num_betas=betas_t.shape[1], use_pca=False, ext="npz")
    with torch.no_grad():
        joints = model(betas=betas_t).joints[0]  # zero pose: rest joints
    rest = torch.cat([joints[:22], joints[list(SMPLX_HAND_JOINTS)]]).double()
    offsets = torch.zeros(24, 3, dtype=torch.float64)
    offsets[0] = rest[0]
    for j in range(1, 24):
        offsets[j] = rest[j] - rest[PARENTS[j]]
    return offsets


def sequence_body(seq: dict, smplx_dir: str | Path | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Joints ``(T, 24, 3)``, global rotations ``(T, 22, 3, 3)``, rest offsets and the body-model name."""
    if smplx_dir is not None:
        offsets, name = smplx_rest_offsets(smplx_dir, seq["gender"], seq["betas"]), "SMPL-X"
    elif "rest_offsets" in seq:
        offsets, name = torch.as_tensor(np.asarray(seq["rest_offsets"]), dtype=torch.float64), str(seq.get("body_model", "proxy-skeleton"))
    else:
        raise FileNotFoundError(f"sequence {seq['seq_name']!r} needs the SMPL-X body model: pass smplx_dir (a folder with SMPLX_MALE.npz, SMPLX_FEMALE.npz, SMPLX_NEUTRAL.npz from {SMPLX_URL})")
    num = len(seq["trans"])
    rotvec = torch.cat([torch.as_tensor(np.asarray(seq["root_orient"])).reshape(num, 1, 3), torch.as_tensor(np.asarray(seq["pose_body"])).reshape(num, 21, 3)], dim=1).double()
    global_rot = local_to_global(roma.rotvec_to_rotmat(rotvec))
    root = torch.as_tensor(np.asarray(seq["trans"])).double() + offsets[0]
    return forward_kinematics(root, global_rot, offsets), global_rot, offsets, name


def object_rest_vertices(data_root: Path, seq: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Rest mesh of the sequence's object, centred on its centre of mass and scaled."""
    obj_name = str(seq["seq_name"]).split("_")[1]
    folder = data_root / "captured_objects"
    candidates = [folder / f"{obj_name}_{seq['seq_name']}.obj", folder / f"{obj_name}_cleaned_simplified.obj"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"object mesh for {seq['seq_name']!r} not found; looked for {', '.join(map(str, candidates))}")
    mesh = trimesh.load(path, force="mesh", process=False)
    verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float64) * float(np.asarray(seq["obj_scale"]).reshape(-1)[0])
    # world = R v + obj_trans; the centre of mass in the rest frame is R^T (com - trans)
    rot0 = torch.as_tensor(np.asarray(seq["obj_rot"][0]), dtype=torch.float64)
    trans0 = torch.as_tensor(np.asarray(seq.get("obj_trans", seq["obj_com_pos"])[0]), dtype=torch.float64).reshape(3)
    com_rest = rot0.T @ (torch.as_tensor(np.asarray(seq["obj_com_pos"][0]), dtype=torch.float64) - trans0)
    return verts - com_rest, torch.as_tensor(np.asarray(mesh.faces))


class FbmWindowDataset(Dataset):
    """CHOIS windows of FullBodyManipulation-format data.

    Each item is a dict: ``motion (W, 220)``, ``rest_offsets (24, 3)``, ``object_points (P, 3)``
    (rest frame), ``half_extents (3,)``, ``bps (3 * bps_points,)``, ``tracks (N, H + 1, 2)``
    pixels, ``track_visible (N, H + 1)``, ``caption``, ``seq_name``, ``body_model``, and with
    ``render=True`` also ``frame0 (3, 256, 256)``.

    Args:
        data_root: folder with the FullBodyManipulation files.
        split: ``"train"`` or ``"test"``.
        config: window length, track horizon/stride, BPS and object-point counts.
        smplx_dir: SMPL-X model folder; ``None`` uses sequences' ``rest_offsets`` (proxy).
        stride: frames between window starts (default: half a window for train, a window for test).
        render: also draw the first frame (for image-conditioned track predictors).
    """

    def __init__(self, data_root: str | Path, split: str, config: ChoisConfig, smplx_dir: str | Path | None = None, stride: int | None = None, render: bool = False) -> None:
        self.root = Path(data_root)
        self.config = config
        self.render = render
        self.basis = bps_basis(config.bps_points, config.bps_radius)
        stride = stride or (config.window // 2 if split == "train" else config.window)
        self.sequences = []
        self.index: list[tuple[int, int]] = []
        for seq in load_sequences(self.root, split):
            positions, global_rot, offsets, body_name = sequence_body(seq, smplx_dir)
            verts, faces = object_rest_vertices(self.root, seq)
            num = positions.shape[0]
            obj_rot = torch.as_tensor(np.asarray(seq["obj_rot"]), dtype=torch.float64).reshape(num, 3, 3)
            com = torch.as_tensor(np.asarray(seq["obj_com_pos"]), dtype=torch.float64).reshape(num, 3)
            half = half_extents_from_vertices(verts)
            contacts = self._contacts(seq, positions, half, obj_rot, com)
            mesh = trimesh.Trimesh(verts.numpy(), faces.numpy(), process=False)
            gen = np.random.default_rng(0)
            pts = torch.as_tensor(mesh.sample(config.object_points, seed=gen))  # keypoints / BPS / guidance
            box_v, _ = box_mesh(half)
            track_pts = torch.cat([box_v.double(), torch.as_tensor(mesh.sample(TRACK_OBJECT_POINTS - 8, seed=gen))])
            caption_file = self.root / "omomo_text_anno_json_data" / f"{seq['seq_name']}.json"
            caption = next(iter(json.loads(caption_file.read_text()).values())) if caption_file.is_file() else ""
            self.sequences.append(dict(seq_name=str(seq["seq_name"]), positions=positions, global_rot=global_rot, offsets=offsets, body_model=body_name,
                                       obj_rot=obj_rot, com=com, half=half, contacts=contacts, points=pts.double(), track_points=track_pts, caption=caption))
            for start in range(0, num - config.window + 1, stride):
                self.index.append((len(self.sequences) - 1, start))
        if not self.index:
            raise ValueError(f"{self.root} ({split}): no sequence is at least {config.window} frames long")

    def _contacts(self, seq: dict, positions: torch.Tensor, half: torch.Tensor, obj_rot: torch.Tensor, com: torch.Tensor) -> torch.Tensor:
        path = self.root / "contact_labels" / f"{seq['seq_name']}.npy"
        if path.is_file():
            labels = torch.as_tensor(np.load(path)).bool()
            if labels.shape != (positions.shape[0], 4):
                raise ValueError(f"{path}: contact labels must be ({positions.shape[0]}, 4), got {tuple(labels.shape)}")
            return labels
        hands = box_sdf(positions[:, list(HAND_JOINTS)], half, obj_rot, com).abs() < CONTACT_THRESHOLD
        return torch.cat([hands, foot_contacts(positions)], dim=1)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        s, start = self.index[i]
        seq = self.sequences[s]
        cfg = self.config
        win = slice(start, start + cfg.window)
        origin = seq["positions"][start, 0].clone()
        origin[2] = 0.0  # canonical window: first-frame pelvis above the x-y origin
        positions = seq["positions"] - origin
        com = seq["com"] - origin
        motion = pack_motion(com[win], seq["obj_rot"][win], positions[win], seq["global_rot"][win], seq["contacts"][win].double())
        bps = bps_feature(self.basis, seq["points"] @ seq["obj_rot"][start].T)
        # tracks: the window's first frame then `track_horizon` steps every `track_stride` frames
        # (clamped at the sequence end), through a camera fixed for the window
        steps = torch.clamp(start + cfg.track_stride * torch.arange(cfg.track_horizon + 1), max=positions.shape[0] - 1)
        camera = camera_for_window(positions[start, 0], float(heading(positions[start : start + 1])[0]))
        rot, centre = seq["obj_rot"][steps], com[steps]
        obj_pts = seq["track_points"] @ rot.transpose(-1, -2) + centre[:, None]
        tracks, visible = project_tracks(camera, positions[steps].float(), obj_pts.float(), seq["half"].float(), rot.float(), centre.float())
        item = dict(motion=motion.float(), rest_offsets=seq["offsets"].float(), object_points=seq["points"].float(), half_extents=seq["half"].float(),
                    bps=bps.float(), tracks=tracks, track_visible=visible, caption=seq["caption"], seq_name=seq["seq_name"], body_model=seq["body_model"])
        if self.render:
            box_v, box_f = box_mesh(seq["half"])
            verts = (box_v.double() @ seq["obj_rot"][start].T + com[start]).float()
            item["frame0"] = render_frame(camera, positions[start].float(), verts, box_f)
        return item


def collate_items(items: list[dict]) -> dict:
    """Stack tensors, keep strings as lists."""
    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out
