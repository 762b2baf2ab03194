"""CLI subcommands, one module each; REGISTRARS lists them in help order."""

from __future__ import annotations

REGISTRARS: list = []


def _load() -> None:
    import importlib

    for name in ("demo", "render", "parse", "ui", "convert_weights", "poses", "motion", "synth", "train", "eval"):
        try:
            module = importlib.import_module(f"conr.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"conr.commands.{name}":
                continue  # a command not built yet
            raise
        REGISTRARS.append(module.register)


_load()
