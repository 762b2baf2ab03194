"""The four CoNR networks and their composition."""

from conr.models.conr import CharacterSheet, CoNR
from conr.models.config import PRESETS, CoNRConfig, preset

__all__ = ["CoNR", "CharacterSheet", "CoNRConfig", "PRESETS", "preset"]
