"""The parity fixture's weight rule (../shared/fixtures/parity-v1/README.md): every tensor is a
function of its name, so the test can make the 720 MB of weights instead of storing them."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
PARITY = FIXTURES / "parity-v1"
KEYS = FIXTURES / "official-checkpoint-keys.json"

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix(seed: int, n: int) -> np.ndarray:
    """Uniform float64 in [0, 1) for i = 1..n, SplitMix64 on wrapping uint64 arithmetic."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def rule_tensor(salt: str, net: str, key: str, shape: list[int]) -> torch.Tensor:
    seed = zlib.crc32(f"{salt}/{net}/{key}".encode())
    n = int(np.prod(shape)) if shape else 1
    x = (2.0 * _splitmix(seed, n) - 1.0) * math.sqrt(3.0)
    if key.endswith("bias"):
        v = 0.1 * x
    elif len(shape) >= 2:
        v = math.sqrt(2.0) * x / math.sqrt(float(np.prod(shape[1:])))
    else:
        v = 0.5 + 0.1 * x
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def rule_state_dicts() -> dict[str, dict[str, torch.Tensor]]:
    """{part: state dict} for the four official files, in the official key order."""
    salt = json.loads((PARITY / "fixture.json").read_text())["salt"]
    files = json.loads(KEYS.read_text())["files"]
    return {fname[: -len(".pth")]: {k: rule_tensor(salt, fname[: -len(".pth")], k, shape)
                                    for k, shape in keys.items()}
            for fname, keys in files.items()}


def write_original_dir(folder: Path, sds: dict[str, dict[str, torch.Tensor]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, sd in sds.items():
        torch.save(sd, folder / f"{part}.pth")
    return folder
