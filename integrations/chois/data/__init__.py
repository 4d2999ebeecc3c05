"""CHOIS data: BVH reader, mocap -> FullBodyManipulation builder, FBM loader, camera tracks (paper §4.3)."""
