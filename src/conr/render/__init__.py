"""The render pipeline: weights in (`weights`), sheets and poses read and cropped (`preprocess`),
frames rendered (`pipeline`) and written (`outputs`). `Renderer` and `find_poses` are the Python API."""

from conr.render.pipeline import CharacterSheet, Frame, PoseSource, Renderer, find_poses, find_sheets

__all__ = ["CharacterSheet", "Frame", "PoseSource", "Renderer", "find_poses", "find_sheets"]
