"""Motion from a video of a person (`conr motion`): landmarks, joint rotations, a BVH file."""
