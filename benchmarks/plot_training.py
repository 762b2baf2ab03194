"""Plot a run's metrics.csv (training and validation losses) to a PNG for the docs.

    python benchmarks/plot_training.py runs/small/metrics.csv docs/images/training_curve.png

Needs matplotlib (`pip install matplotlib`), which conr itself does not depend on.
"""

from __future__ import annotations

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TERMS = ("rgba", "alpha", "parser", "flow", "warp")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics")
    ap.add_argument("png")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    with open(args.metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    fig, axes = plt.subplots(1, len(TERMS), figsize=(3.2 * len(TERMS), 2.8))
    for ax, term in zip(axes, TERMS):
        for prefix, style in (("loss/", "-"), ("val/", "o-")):
            pts = [(int(r["step"]), float(r[prefix + term])) for r in rows if r.get(prefix + term)]
            if pts:
                ax.plot(*zip(*pts), style, ms=3, lw=1, label="train" if prefix == "loss/" else "validation")
        ax.set_title(term)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.png, dpi=90)


if __name__ == "__main__":
    main()
