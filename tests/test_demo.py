"""`conr demo` end to end: a new character rendered with the bundled model, as frames and videos
that decode to the right number of frames, the WebM keeping its transparency."""

from __future__ import annotations

import av
import numpy as np

from conr.cli import main
from conr.files.io import read_frame


def _decode(path, decoder: str | None = None) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = av.CodecContext.create(decoder, "r") if decoder else stream.codec_context
        return [f.to_ndarray(format="rgba") for packet in container.demux(stream) for f in ctx.decode(packet)]


def test_demo_writes_frames_and_playable_videos(capsys, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "4", "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "bundled model" in printed.err and str(out / "demo.webm") in printed.out

    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) == 4
    alpha = read_frame(frames[0])[:, :, 3]
    assert 0 < np.count_nonzero(alpha) < alpha.size / 2  # a figure on a transparent background
    assert len(list((out / "character" / "char_0000" / "sheet").glob("*.png"))) == 4

    mp4 = _decode(out / "demo.mp4")
    webm = _decode(out / "demo.webm", "libvpx-vp9")  # ffmpeg's native VP9 decoder drops alpha
    assert len(mp4) == len(webm) == 4
    assert webm[0][:, :, 3].min() == 0 and webm[0][:, :, 3].max() > 200


def test_demo_refuses_an_existing_folder(capsys, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(out), "--frames", "2", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
