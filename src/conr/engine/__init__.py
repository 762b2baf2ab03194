"""The 3D side of conr: skinned characters, motions, cameras and a PyTorch rasteriser that writes
Ultra-Dense Pose (UDP) frames and cel-shaded RGBA images. See docs/engine.md."""
