"""Drawing styles for `conr synth`: how a character is shaded and lined, and how its sheet was cut out.

A style has a name (its family: what a training run can hold out whole with `--styles`) and
parameters drawn within the family from a seed (light direction, shadow depth, line width and ink,
palette), plus the cut-out traits of the sheet (halo, soft or jagged edge, JPEG, low resolution).

    classic   conr's own look: two tones, thin dark outline, clean edges (what `conr synth` drew before)
    cel       two tones of any depth, outline of any width and dark ink, any light
    flat      base colours only, with an outline
    tone3     three tones (shadow, mid, light)
    soft      a soft gradient from shadow to light, thin coloured lines
    ink       heavy black lines, strong colours, flat or two tones
    lineless  no lines at all, cel or soft shading with a rim light
    pastel    pale, desaturated colours, soft shading, light lines
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from conr.engine.cutout import Cutout
from conr.engine.renderer import CelStyle
from conr.errors import ConrError

STYLES = ("classic", "cel", "flat", "tone3", "soft", "ink", "lineless", "pastel")
# Styles the bundled model never trains on: scored separately, they say how it carries over to looks
# it never saw (as drawn sheets are).
HELD_OUT_STYLES = ("soft", "pastel")
TRAINED_STYLES = tuple(s for s in STYLES if s not in HELD_OUT_STYLES)


@dataclass(frozen=True)
class Style:
    name: str
    shading: CelStyle = field(default_factory=CelStyle)
    cutout: Cutout = field(default_factory=Cutout)

    def to_dict(self) -> dict:
        return {"name": self.name, "shading": asdict(self.shading), "cutout": self.cutout.to_dict()}


def parse_styles(text: str) -> tuple[str, ...]:
    """'all' or a comma-separated list of style names -> the names, checked."""
    if text.strip() == "all":
        return STYLES
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in STYLES]
    if unknown or not names:
        raise ConrError(f"--styles: unknown style {', '.join(map(repr, unknown)) or repr(text)}",
                        hint=f"use 'all' or a comma-separated list of: {', '.join(STYLES)}")
    return names


def draw_style(seed: int, names: tuple[str, ...] = STYLES, style_seed: int = 0) -> Style:
    """The style of the character of `seed`: a family from `names`, its parameters from (seed, style_seed)."""
    rng = np.random.default_rng([seed, style_seed, 0x57])
    name = names[int(rng.integers(len(names)))]
    if name == "classic":
        return Style(name)
    light = (float(rng.uniform(10, 60)), float(rng.uniform(-70, 70)))
    dark_ink = tuple(float(c) for c in rng.uniform(0.0, 0.25, 3))
    kw: dict = {"light": light, "outline_colour": dark_ink, "outline_px": float(rng.uniform(0.8, 1.8)),
                "shadow": float(rng.uniform(0.6, 0.82)), "threshold": float(rng.uniform(-0.2, 0.25))}
    if name == "flat":
        kw["shadow"] = 1.0
    elif name == "tone3":
        kw.update(softness=float(rng.uniform(0.35, 0.6)), tones=3, shadow=float(rng.uniform(0.55, 0.75)))
    elif name == "soft":
        ink = np.asarray(rng.uniform(0.25, 0.5, 3)) * np.array([1.0, 0.8, 0.75])  # a warm coloured line
        kw.update(softness=float(rng.uniform(0.3, 0.8)), outline_colour=tuple(float(c) for c in ink),
                  outline_px=float(rng.uniform(0.6, 1.2)), rim=float(rng.uniform(0.0, 0.3)))
    elif name == "ink":
        kw.update(outline_px=float(rng.uniform(2.0, 3.5)), outline_colour=(0.02, 0.02, 0.03),
                  saturation=float(rng.uniform(1.05, 1.3)), crease=0.02)
        if rng.random() < 0.5:
            kw["shadow"] = 1.0
    elif name == "lineless":
        kw.update(outline_px=0.0, rim=float(rng.uniform(0.2, 0.5)))
        if rng.random() < 0.5:
            kw["softness"] = float(rng.uniform(0.2, 0.6))
    elif name == "pastel":
        kw.update(saturation=float(rng.uniform(0.4, 0.75)), value=float(rng.uniform(1.0, 1.12)),
                  softness=float(rng.uniform(0.3, 0.7)), shadow=float(rng.uniform(0.75, 0.9)),
                  outline_colour=tuple(float(c) for c in rng.uniform(0.4, 0.6, 3)), outline_px=float(rng.uniform(0.6, 1.2)))
    return Style(name, CelStyle(**kw), _draw_cutout(rng))


def _draw_cutout(rng: np.random.Generator) -> Cutout:
    kw: dict = {}
    if rng.random() < 0.25:
        light = rng.random() < 0.65
        kw.update(halo_colour=tuple(float(c) for c in (rng.uniform(0.85, 1.0, 3) if light else rng.uniform(0.0, 0.2, 3))),
                  halo_px=int(rng.integers(1, 3)))
    edge = rng.random()
    if edge < 0.25:
        kw.update(edge="soft", edge_px=float(rng.uniform(0.5, 1.5)))
    elif edge < 0.4:
        kw.update(edge="jagged", edge_px=float(rng.integers(2, 4)))
    if rng.random() < 0.15:
        kw["lowres"] = float(rng.uniform(0.4, 0.8))
    if rng.random() < 0.2:
        kw["jpeg"] = int(rng.integers(30, 90))
    return Cutout(**kw)
