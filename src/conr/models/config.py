"""Architecture configs: the keyword arguments of every component, with named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from conr.models.layers import ResUNetConfig
from conr.models.lookup_shader import LookupShaderConfig
from conr.models.shader import ShaderConfig


@dataclass(frozen=True)
class CoNRConfig:
    """Two families: the paper's (UDP parser, target pose encoder, CINN shader, RGBA decoder) and the
    correspondence-first one (UDP parser and lookup shader), chosen by which configs are set."""

    parser: ResUNetConfig
    pose_encoder: ResUNetConfig | None = None
    shader: ShaderConfig | None = None
    decoder_blocks: int = 1
    # The resolution the networks were trained at; the lookup family draws frames at their own size
    # and this is the most it draws at (larger crops are resized to it).
    image_size: int = 256
    lookup: LookupShaderConfig | None = None  # set: the correspondence-first family

    @property
    def family(self) -> str:
        return "lookup" if self.lookup is not None else "cinn"

    @staticmethod
    def build(parser: ResUNetConfig, pose_encoder: ResUNetConfig, width: int, last_message: int,
              flow_groups: int = 16, residual_blocks: tuple[int, ...] = (1, 1, 1, 1, 1, 2),
              image_size: int = 256) -> "CoNRConfig":
        """Derive the shader's channel counts from the two encoders, as the paper's design does:
        at every feature level the messages and local messages are as wide as the sheet features."""
        ref = tuple(parser.feature_channels)
        shader = ShaderConfig(
            target_feature_channels=tuple(pose_encoder.feature_channels),
            reference_feature_channels=ref,
            message_channels=(*ref, last_message),
            local_channels=(*ref, 0),
            residual_blocks=residual_blocks,
            width=width,
            flow_groups=flow_groups,
        )
        return CoNRConfig(parser=parser, pose_encoder=pose_encoder, shader=shader, image_size=image_size)

    @property
    def decoder_channels(self) -> int:
        assert self.shader is not None
        return self.shader.message_channels[-1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "CoNRConfig":
        def tuples(sub: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in sub.items()}

        def part(cls, key: str):
            return None if d.get(key) is None else cls(**tuples(d[key]))

        return CoNRConfig(
            parser=ResUNetConfig(**tuples(d["parser"])),
            pose_encoder=part(ResUNetConfig, "pose_encoder"),
            shader=part(ShaderConfig, "shader"),
            decoder_blocks=int(d.get("decoder_blocks", 1)),
            image_size=int(d.get("image_size", 256)),
            lookup=part(LookupShaderConfig, "lookup"),
        )


def _official() -> CoNRConfig:
    # UDP parser: ResNet-50 with a learned stride-2 conv in place of max pooling.
    parser = ResUNetConfig(in_channels=3, out_channels=4, block="bottleneck", layers=(3, 4, 6, 3),
                           stem_pool="conv")
    # Target pose encoder: ResNet-18 over 4-channel UDP input.
    pose = ResUNetConfig(in_channels=4, out_channels=1, block="basic", layers=(2, 2, 2, 2), stem_pool="max")
    return CoNRConfig.build(parser, pose, width=224, last_message=64)


def _small_parser() -> ResUNetConfig:
    return ResUNetConfig(in_channels=3, out_channels=4, block="bottleneck", layers=(1, 1, 1, 1),
                         stem_width=32, widths=(16, 32, 64, 128), stem_pool="conv",
                         decoder_filters=(128, 96, 64, 32, 16))


def _small() -> CoNRConfig:
    """About 1/8 of the official compute: trainable on a CPU for demos."""
    parser = _small_parser()
    pose = ResUNetConfig(in_channels=4, out_channels=1, block="basic", layers=(1, 1, 1, 1),
                         stem_width=32, widths=(32, 64, 128, 128), stem_pool="max",
                         decoder_filters=(128, 96, 64, 32, 16))
    return CoNRConfig.build(parser, pose, width=64, last_message=32, flow_groups=8)


def _tiny() -> CoNRConfig:
    """For tests: a few thousand parameters, same code paths as the official model."""
    parser = ResUNetConfig(in_channels=3, out_channels=4, block="bottleneck", layers=(1, 1, 1, 1),
                           stem_width=8, widths=(2, 4, 4, 4), stem_pool="conv",
                           decoder_filters=(16, 16, 8, 8, 8))
    pose = ResUNetConfig(in_channels=4, out_channels=1, block="basic", layers=(1, 1, 1, 1),
                         stem_width=8, widths=(8, 8, 8, 8), stem_pool="max",
                         decoder_filters=(16, 16, 8, 8, 8))
    return CoNRConfig.build(parser, pose, width=8, last_message=8, flow_groups=2,
                            residual_blocks=(1, 1, 1, 1, 1, 1))


def _lookup() -> CoNRConfig:
    """Correspondence first: the small parser at 128 px, explicit UDP matching and copying at the
    frames' own size (up to 1024 px), refinement at 128. The refinement weighs the views and draws
    the lines but moves no match: its flow corrections, learned at 128 px, lost right pixels on
    characters it never saw (0.540 without them, 0.527 with, validation seeds 710000+)."""
    return CoNRConfig(parser=_small_parser(), image_size=1024,
                      lookup=LookupShaderConfig(ink=True, max_correction=0.0))


def _lookup_lines() -> CoNRConfig:
    """`lookup` with the line head: the outline as wide as the sheet draws it, in a colour read off
    its edge (`conr train --stage lines`). Not the bundled model's: trained on the six drawing styles
    it gained 0.013 right pixels on held-out characters of those styles and lost 0.010 (SSIM 0.011)
    on the styles it never saw, whose lighter lines it reads as none."""
    base = _lookup()
    assert base.lookup is not None
    return dataclasses.replace(base, lookup=dataclasses.replace(base.lookup, line_width=True))


def _lookup_tilt() -> CoNRConfig:
    """`lookup` whose refinement and head also read the surface tilt of the target and of the pixels
    they copy (conr.models.tilt): cel shading follows it, so it tells where a copied pixel's shading
    is another view's. Start it from `lookup` weights (`conr train --init`): the tilt inputs start
    with no say."""
    base = _lookup()
    assert base.lookup is not None
    return dataclasses.replace(base, lookup=dataclasses.replace(base.lookup, tilt=True))


def _lookup_tiny() -> CoNRConfig:
    """For tests: the lookup family with a tiny parser and refinement network, the line head
    (`lookup-lines`) and the tilt inputs (`lookup-tilt`), so that the tests run every part of the family."""
    return CoNRConfig(parser=_tiny().parser, image_size=128,
                      lookup=LookupShaderConfig(parser_size=64, work_size=64, widths=(4, 8), head_width=4,
                                                 ink=True, line_width=True, tilt=True))


PRESETS = {"official": _official, "small": _small, "tiny": _tiny, "lookup": _lookup, "lookup-lines": _lookup_lines,
           "lookup-tilt": _lookup_tilt, "lookup-tiny": _lookup_tiny}


def preset(name: str) -> CoNRConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
