"""Tests of the 3D engine: rasteriser, characters, motions, formats and commands."""
