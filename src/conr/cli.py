"""The `conr` command: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from conr.errors import ConrError

# Each command module exposes `register(subparsers)`, which adds its parser and sets `func`.
CommandRegistrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[CommandRegistrar]:
    from conr import commands

    return commands.REGISTRARS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conr",
        description="Render anime characters from character sheets and Ultra-Dense Pose sequences.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse gives up on positionals that come after an option (`conr poses a.glb --size 32
    # walk`); commands taking a list of inputs get them back.
    if extra and isinstance(getattr(args, "inputs", None), list) and not any(e.startswith("-") for e in extra):
        args.inputs += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code = args.func(args)
    except ConrError as err:
        print(f"conr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
