"""The one error type a user sees: it names the file, the problem and the fix."""

from __future__ import annotations

import errno
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


# What the environment refused, in words; the fix is the user's (space, rights, another path).
_ENVIRONMENT = {
    errno.ENOSPC: ("no space left on the device", "free some space or write to another disk"),
    errno.EDQUOT: ("the disk quota is used up", "free some space or write to another disk"),
    errno.EACCES: ("permission denied", "choose a place you may write to (or read from), or change its permissions"),
    errno.EPERM: ("operation not permitted", "choose a place you may write to, or change its permissions"),
    errno.EROFS: ("the file system is read-only", "write to another place"),
    errno.EISDIR: ("is a folder, where a file was expected", "give a file's path"),
    errno.ENOTDIR: ("a part of the path is a file, where a folder was expected", "give a path through folders"),
    # mkdir(parents=True, exist_ok=True) says EEXIST, naming the file, when a part of the path is one.
    errno.EEXIST: ("is a file, where a folder was expected", "give a path through folders, or move that file away"),
    errno.ENAMETOOLONG: ("the file name is too long", "choose a shorter name or path"),
    errno.EMFILE: ("too many files are open", "raise the limit (ulimit -n) or work on fewer files at once"),
}


def environment_error(err: OSError, path: str | Path | None = None, doing: str = "writing") -> ConrError | None:
    """An OSError the user's machine raised (full disk, no permission, read-only...) as a ConrError
    naming the path, or None when it is not one of those (then it is a bug and keeps its traceback)."""
    known = _ENVIRONMENT.get(err.errno if isinstance(err.errno, int) else -1)
    if known is None:
        return None
    problem, fix = known
    where = err.filename if err.filename else path
    kept = " (nothing half-written was left: outputs appear only when complete)" if doing == "writing" else ""
    return ConrError(f"{problem} while {doing}{kept}", where, fix)
