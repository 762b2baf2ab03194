"""The web UI, end to end: a real `conr ui` server on 127.0.0.1 driven through `gradio_client`."""

from __future__ import annotations

import io
import socket
import threading
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest

gradio_client = pytest.importorskip("gradio_client", reason="the web UI's extra is not installed: pip install -e '.[ui]'")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conr.files.io import read_frame  # noqa: E402
from conr.render.pipeline import Renderer, find_poses  # noqa: E402
from conr.files.uploads import UploadLimits  # noqa: E402

FRAMES = 2
MAX_FRAMES = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conr.ui.app import serve
    from conr.ui.service import RenderService, UILimits

    work = tmp_path_factory.mktemp("ui-work")
    limits = UILimits(UploadLimits(max_files=12, max_file_mb=2.0, max_total_mb=8.0), max_frames=MAX_FRAMES,
                      max_seconds=4.0)
    service = RenderService(None, "cpu", limits, work)
    port = _free_port()
    app = serve(service, "127.0.0.1", port, max_file_mb=2.0, block=False)
    yield f"http://127.0.0.1:{port}/", work, service
    app.close()


@pytest.fixture(scope="module")
def characters(tmp_path_factory) -> list[Path]:
    """Four procedural characters (held-out seeds), each with a 2-view sheet and 2 UDP frames."""
    from conr.engine.synth import synthesize

    root = tmp_path_factory.mktemp("chars") / "data"
    synthesize(root, seed=900020, count=4, motion="random", frames=FRAMES, size=96, views=2, targets=False)
    return sorted(root.glob("char_*"))


def _render(url: str, **kw):
    kw.setdefault("size", 128)
    return Client(url, verbose=False).predict(**kw, api_name="/render")


def _frames_of(zip_path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(zip_path) as zf:
        out = {}
        for name in zf.namelist():
            data = zf.read(name)
            path = Path(zip_path).with_name(Path(name).name)
            path.write_bytes(data)
            out[Path(name).stem] = read_frame(path)
        return out


def _expected(char: Path) -> list[np.ndarray]:
    """What the CLI's pipeline renders for this character: the reference for the UI's frames."""
    renderer = Renderer.from_weights(None, device="cpu", size=128)
    sheet = renderer.load_sheet(char / "sheet")
    return [f.rgba for f in renderer.render(sheet, find_poses(char / "udp"))]


def _video_frames(path: str) -> int:
    with av.open(path) as c:
        return sum(1 for _ in c.decode(video=0))


def test_render_end_to_end_gives_the_pipelines_frames_video_and_downloads(server, characters):
    url, work, _ = server
    char = characters[0]
    mp4, downloads, summary = _render(
        url, sheet_files=[handle_file(str(p)) for p in sorted((char / "sheet").glob("*.png"))],
        pose_source="frames", pose_files=[handle_file(str(p)) for p in sorted((char / "udp").glob("*.npz"))],
        fps=12)
    assert f"Rendered {FRAMES} frames" in summary
    assert _video_frames(mp4) == FRAMES
    names = sorted(Path(d).name for d in downloads)
    assert names == ["frames.zip", "render.mov", "render.webm", "udp.zip"]
    webm = next(d for d in downloads if d.endswith(".webm"))
    with av.open(webm) as c:
        assert c.streams.video[0].codec_context.name in ("vp9", "libvpx-vp9")
    got = _frames_of(next(d for d in downloads if d.endswith("frames.zip")))
    expected = _expected(char)
    assert len(got) == FRAMES
    for key, exp in zip(sorted(got), expected):
        np.testing.assert_array_equal(got[key], exp)
    with zipfile.ZipFile(next(d for d in downloads if d.endswith("udp.zip"))) as zf:
        assert len(zf.namelist()) == FRAMES
    assert list(work.iterdir()) == []


def test_pose_frames_in_one_zip_render_the_same(server, characters, tmp_path):
    url, work, _ = server
    char = characters[1]
    archive = tmp_path / "dance.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((char / "udp").glob("*.npz")):
            zf.write(p, f"dance/{p.name}")
    _, downloads, _ = _render(url, sheet_files=[handle_file(str(p)) for p in sorted((char / "sheet").glob("*.png"))],
                              pose_source="frames", pose_files=[handle_file(str(archive))])
    got = _frames_of(next(d for d in downloads if d.endswith("frames.zip")))
    for key, exp in zip(sorted(got), _expected(char)):
        np.testing.assert_array_equal(got[key], exp)
    assert list(work.iterdir()) == []


def test_four_clients_at_once_each_get_their_own_character(server, characters):
    url, work, _ = server
    results: dict[int, object] = {}

    def one(k: int) -> None:
        char = characters[k]
        try:
            results[k] = _render(url, sheet_files=[handle_file(str(p)) for p in sorted((char / "sheet").glob("*.png"))],
                                 pose_source="frames",
                                 pose_files=[handle_file(str(p)) for p in sorted((char / "udp").glob("*.npz"))])
        except Exception as e:  # reported below, with the client's number
            results[k] = e

    threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    for k in range(4):
        assert not isinstance(results[k], Exception), f"client {k}: {results[k]}"
        _, downloads, _ = results[k]
        got = _frames_of(next(d for d in downloads if d.endswith("frames.zip")))
        for key, exp in zip(sorted(got), _expected(characters[k])):
            np.testing.assert_array_equal(got[key], exp, err_msg=f"client {k} got another character's frames")
    assert list(work.iterdir()) == []


def test_demo_character_and_its_body_need_no_upload(server):
    url, work, _ = server
    mp4, downloads, summary = _render(url, demo_seed=900005, pose_source="demo", motion="wave", frames=3, fps=10)
    assert "Rendered 3 frames" in summary and _video_frames(mp4) == 3
    gallery = Client(url, verbose=False).predict(source="demo", motion="wave", frames=3, fps=10, seed=900005,
                                                 api_name="/preview")
    assert len(gallery) == 3
    sheet = Client(url, verbose=False).predict(files=[], seed=900005, api_name="/sheet")
    assert len(sheet) == 4
    assert list(work.iterdir()) == []


def test_a_3d_model_and_a_motion_make_the_poses(server, characters, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from engine.test_formats import BVH_NAMES, bvh_of_humanoid
    from engine.writers import mesh_to_glb, mesh_to_pmx

    from conr.engine.procedural import character

    url, work, _ = server
    mesh = character(11, detail=0.3)[1]
    glb = tmp_path / "girl.glb"
    mesh_to_glb(mesh, glb)
    sheet = [handle_file(str(p)) for p in sorted((characters[0] / "sheet").glob("*.png"))]
    mp4, _, summary = _render(url, sheet_files=sheet, pose_source="model", model_file=handle_file(str(glb)),
                              motion="walk", frames=3, fps=10)
    assert "Rendered 3 frames" in summary and _video_frames(mp4) == 3
    # MMD's way: a .pmx with its textures in a zip.
    pmx = tmp_path / "girl.pmx"
    mesh_to_pmx(mesh, pmx, texture="tex/skin.png")
    archive = tmp_path / "girl.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(pmx, "girl/girl.pmx")
        zf.writestr("girl/tex/skin.png", _png_bytes())
    bvh = tmp_path / "nod.bvh"
    motion = np.zeros((MAX_FRAMES + 4, 3 + 3 * len(BVH_NAMES)))
    motion[:, 3 + 3 * BVH_NAMES.index("Head")] = np.linspace(0, 30, len(motion))
    bvh_of_humanoid(bvh, motion)
    _, _, summary = _render(url, sheet_files=sheet, pose_source="model", model_file=handle_file(str(archive)),
                            motion_file=handle_file(str(bvh)), frames=MAX_FRAMES, fps=30)
    assert f"Rendered {MAX_FRAMES} frames" in summary  # a longer motion is cut to the frames asked for, and said so
    assert f"has {MAX_FRAMES + 4} frames; kept the first {MAX_FRAMES}" in summary
    assert list(work.iterdir()) == []


def _png_bytes(h: int = 8, w: int = 8, alpha: int = 255) -> bytes:
    from conr.files.io import encode_png

    img = np.full((h, w, 4), 200, np.uint8)
    img[..., 3] = alpha
    return encode_png(img)


def _zip_with(tmp_path: Path, name: str, member: str, data: bytes) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    return path


def _huge_npz(tmp_path: Path) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (100000, 100000, 4)})
    return _zip_with(tmp_path, "huge.npz", "i.npy", header.getvalue() + b"\0" * 64)


BAD_UPLOADS = {
    # name: (what to change in a good request, words the message must hold)
    "opaque sheet": (lambda t, c: {"sheet_files": [_file(t, "flat.png", _png_bytes(64, 64))]},
                     ["flat.png", "background"]),
    "not a png sheet": (lambda t, c: {"sheet_files": [_file(t, "notes.txt", b"hello")]}, ["notes.txt", ".png"]),
    "truncated sheet": (lambda t, c: {"sheet_files": [_file(t, "cut.png", _png_bytes(64, 64, 0)[:40])]},
                        ["cut.png"]),
    "zip slip": (lambda t, c: {"pose_files": [_zip_with(t, "evil.zip", "../../evil.npz", b"x")]},
                 ["evil.zip", "evil.npz"]),
    "zip link": (lambda t, c: {"pose_files": [_zip_link(t)]}, ["links.zip", "link"]),
    "huge npz header": (lambda t, c: {"pose_files": [_huge_npz(t)]}, ["huge.npz", "100000"]),
    "too many frames": (lambda t, c: {"pose_files": [_many_frames(t, c)]}, ["7 pose frames", str(MAX_FRAMES)]),
    "too many files": (lambda t, c: {"pose_files": [_many_files(t)]}, ["more than 12 files", "many.zip"]),
    "too long": (lambda t, c: {"pose_source": "demo", "frames": 5, "fps": 1}, ["5.0 s", "at most 4 s"]),
    "no 3d model": (lambda t, c: {"pose_source": "model"}, ["no 3D model"]),
    "bad colour": (lambda t, c: {"background": "sky"}, ["sky", "colour"]),
    "nine views": (lambda t, c: {"sheet_files": sorted((c / "sheet").glob("*.png")) * 5}, ["10 images", "at most 8"]),
    "two models": (lambda t, c: {"pose_source": "model", "model_file": _two_models(t)}, ["found 2", "one .pmx"]),
    "corrupt model": (lambda t, c: {"pose_source": "model", "model_file": _file(t, "broken.glb", b"glTF junk")},
                      ["broken.glb"]),
    "motion of text": (lambda t, c: {"pose_source": "demo", "motion_file": _file(t, "dance.txt", b"x")},
                       ["dance.txt", ".bvh"]),
}


def _two_models(tmp_path: Path) -> Path:
    path = tmp_path / "models.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/a.pmx", b"PMX ")
        zf.writestr("b/b.pmx", b"PMX ")
    return path


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _zip_link(tmp_path: Path) -> Path:
    import stat

    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("0.npz")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return path


def _many_frames(tmp_path: Path, char: Path) -> Path:
    path = tmp_path / "long.zip"
    frame = (char / "udp" / "0.npz").read_bytes()
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(MAX_FRAMES + 1):
            zf.writestr(f"{k}.npz", frame)
    return path


def _many_files(tmp_path: Path) -> Path:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(13):
            zf.writestr(f"{k}.npz", b"x")
    return path


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_each_bad_upload_gets_its_message(server, characters, tmp_path, case):
    url, work, _ = server
    change, words = BAD_UPLOADS[case]
    char = characters[0]
    req = {"sheet_files": sorted((char / "sheet").glob("*.png")), "pose_source": "frames",
           "pose_files": sorted((char / "udp").glob("*.npz")), **change(tmp_path, char)}
    for key in ("sheet_files", "pose_files"):
        req[key] = [handle_file(str(p)) for p in req[key]]
    for key in ("model_file", "motion_file"):
        if key in req:
            req[key] = handle_file(str(req[key]))
    with pytest.raises(AppError) as err:
        _render(url, **req)
    message = str(err.value)
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    assert str(work) not in message and "/tmp" not in message  # our server paths stay private
    assert list(work.iterdir()) == []


CHROMIUM = Path("/usr/bin/chromium")
# As root in a container, without GPU, and with no calls out of a closed network.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def test_a_browser_uploads_renders_and_finds_the_video(server, characters, tmp_path):
    """Headless Chromium: upload a sheet and poses, press Render, find the video; the screenshot
    goes to $CONR_UI_SCREENSHOT when set (the README's picture)."""
    import os

    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: the README's set-up installs Debian's chromium package")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
    url, work, _ = server
    char = characters[2]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        page.locator("#sheet-files input[type=file]").set_input_files(
            [str(p) for p in sorted((char / "sheet").glob("*.png"))])
        page.locator("#sheet-gallery img").nth(1).wait_for(timeout=60_000)
        page.get_by_label("Pose frames").check()
        page.locator("#pose-files input[type=file]").set_input_files(
            [str(p) for p in sorted((char / "udp").glob("*.npz"))])
        page.locator("#pose-files").get_by_label("1.npz").wait_for(timeout=60_000)
        page.get_by_role("button", name="Preview poses").click()
        page.locator("#pose-gallery img").nth(1).wait_for(timeout=60_000)
        page.locator("#render").click()
        video = page.locator("#result-video video")
        video.wait_for(timeout=300_000)
        src = video.get_attribute("src")
        assert src and src.endswith("render.mp4")
        assert page.request.get(src).ok
        page.locator("#downloads").get_by_label("frames.zip").wait_for(timeout=60_000)
        assert "Rendered 2 frames" in page.locator("#status").inner_text()
        shot = Path(os.environ.get("CONR_UI_SCREENSHOT", tmp_path / "ui.png"))
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    assert list(work.iterdir()) == []


def test_renders_take_turns_on_a_device(tmp_path):
    """With one slot per device, two renders on the CPU never overlap."""
    import time

    from conr.ui.service import RenderService

    service = RenderService(None, "cpu", workdir=tmp_path)
    inside, most = [0], [0]
    lock = threading.Lock()

    def render() -> None:
        with service.device_slot("cpu"):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.2)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=render) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
