"""The `conr` command: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Callable, Sequence

from conr.errors import ConrError, environment_error

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
    try:
        args, extra = parser.parse_known_args(argv)
        # argparse gives up on positionals that come after an option (`conr poses a.glb --size 32
        # walk`); commands taking a list of inputs get them back.
        if extra and isinstance(getattr(args, "inputs", None), list) and not any(e.startswith("-") for e in extra):
            args.inputs += extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        _refuse_empty_values(parser, args)
    except SystemExit as stop:  # a bad option (argparse printed why) or --help
        return stop.code if isinstance(stop.code, int) else 2
    received: list[int] = []
    previous = _stop_on_signals(received)
    try:
        code = args.func(args)
    except ConrError as err:
        print(f"conr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        env = environment_error(err)
        if env is None:
            raise
        print(f"conr {args.command}: error: {env}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"conr {args.command}: error: out of memory (nothing half-written was left)\n"
              "  fix: use a smaller --size, fewer frames or views, or a machine with more memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        name = signal.Signals(received[0]).name if received else "SIGINT"
        print(f"interrupted ({name}); nothing half-written was left", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return int(code or 0)


def _refuse_empty_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty value (`--out ""`, an unset shell variable) is a mistake for every option and input:
    as a path it would mean the current folder, which a command would then read or fill."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[args.command]
    for action in command._actions:
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            name = "/".join(action.option_strings) or action.metavar or action.dest
            command.error(f"argument {name}: an empty value; give a path or a value")


def _stop_on_signals(received: list[int]) -> dict:
    """SIGTERM and SIGHUP (what `timeout`, systemd, containers and a closed terminal send) stop a
    command the way Ctrl-C does, so the same clean-up runs: no temporary folder or file stays."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, stop)
    return previous


if __name__ == "__main__":
    sys.exit(main())
