"""The one error type a user sees: it names the file, the problem and the fix."""

from __future__ import annotations

from pathlib import Path


class ConrError(Exception):
    """A problem with the user's input or setup, reported without a traceback by the CLI."""

    def __init__(self, problem: str, path: str | Path | None = None, hint: str | None = None):
        self.problem = problem
        self.path = None if path is None else Path(path)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        fix = f"\n  fix: {self.hint}" if self.hint else ""
        return f"{where}{self.problem}{fix}"
