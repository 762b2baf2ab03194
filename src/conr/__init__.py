"""conr: Collaborative Neural Rendering using Anime Character Sheets."""

from conr.errors import ConrError

__all__ = ["ConrError"]
__version__ = "0.1.0"
