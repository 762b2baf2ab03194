"""Training works: a small network trained on one synthetic character learns to render it.

Judged by what a user sees, through `conr eval`'s metrics: on the frames it saw, the model must put
the right colour on more silhouette pixels than copying the front sheet view does, and be closer
inside the silhouette. An empty output gets 0 right pixels and a blurred average of the character
gets about 11 % here (measured, 600 samples of the `small` preset), against about 26 % for copy:
both fail. About 3 minutes on 2 cores."""

from __future__ import annotations

import csv

import pytest

from conr.engine.synth import synthesize
from conr.training.data import read_data
from conr.training.evaluate import evaluate
from conr.training.loop import TrainConfig, train
from conr.render.weights import load_model

pytestmark = pytest.mark.slow


def test_a_trained_model_renders_the_character_it_saw_better_than_copying(tmp_path):
    data = tmp_path / "data"
    synthesize(data, seed=3, count=1, frames=2, size=128, views=4)
    run = tmp_path / "run"
    train(TrainConfig(data=[str(data)], out=str(run), preset="tiny", size=128, steps=300, batch_size=2, lr=2e-3,
                      warmup=20, views=(4, 4), val_characters=0, workers=0, jitter=False, log_every=10,
                      sample_every=10**9, save_every=10**9), progress=False, log=lambda s: None)

    with open(run / "metrics.csv", newline="") as f:
        losses = [float(r["loss/total"]) for r in csv.DictReader(f) if r.get("loss/total")]
    assert losses[-1] < 0.2 * losses[0], f"the loss did not fall: {losses}"

    result = evaluate(load_model(run), read_data([str(data)]), 128, 4, progress=False)
    model, copy = result["overall"]["model"], result["overall"]["copy"]
    report = f"model {model}\ncopy {copy}"
    assert model["right_pixels"] > copy["right_pixels"] + 0.05, report
    assert model["l1_inside"] < copy["l1_inside"], report
    assert model["ssim"] > copy["ssim"], report
    assert model["l1_alpha"] < 0.05, report
