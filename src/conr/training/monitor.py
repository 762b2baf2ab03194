"""Watching a run: a CSV row and TensorBoard scalars per logged step, PNG grids of fixed samples."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import Tensor

from conr.files.io import atomic_write_bytes, atomic_write_png
from conr.training.metrics import over_white

CSV_NAME = "metrics.csv"


class MetricsLog:
    """metrics.csv (a row per logged step; a resumed run drops the rows after its checkpoint) and
    TensorBoard event files under tensorboard/."""

    def __init__(self, out: Path, resume_step: int | None):
        self.path = out / CSV_NAME
        self.rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.columns: list[str] = list(self.rows[0].keys()) if self.rows else []
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=None if resume_step is None else resume_step + 1)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        row = {"step": str(step), **{k: f"{v:.6g}" for k, v in values.items()}}
        for k in row:
            if k not in self.columns:
                self.columns.append(k)
        self.rows.append(row)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, restval="")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_bytes(self.path, buf.getvalue().encode())
        for k, v in values.items():
            self.tb.add_scalar(k.replace(".", "/"), v, step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def _tile(rgba: Tensor) -> np.ndarray:
    """(4, H, W) premultiplied RGBA in [0, 1] -> (H, W, 3) uint8 over white."""
    rgb = over_white(rgba[None])[0]
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def sample_grid(batch: Mapping[str, Tensor], rgba: Tensor) -> np.ndarray:
    """One row per sample: the sheet views, the target UDP, the prediction and the ground truth.
    Returns (H, W, 4) uint8 RGBA."""
    rows = []
    for i in range(rgba.shape[0]):
        views = batch["sheet_rgb"][i]
        alpha = batch["sheet_alpha"][i]
        tiles = [_tile(torch.cat([views[k], alpha[k]])) for k in range(views.shape[0])]
        udp = batch["target_udp"][i]
        tiles.append((udp[:3] * udp[3:4] * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy())
        tiles += [_tile(rgba[i].float()), _tile(batch["target_rgba"][i])]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    return np.concatenate([grid, np.full(grid.shape[:2] + (1,), 255, np.uint8)], axis=2)


def write_grid(path: Path, batch: Mapping[str, Tensor], rgba: Tensor) -> None:
    atomic_write_png(path, sample_grid(batch, rgba))
