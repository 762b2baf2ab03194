"""`conr render`: a character sheet and a pose sequence in, RGBA frames (and a video) out."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from conr.commands.options import FPS, SIZE, ranged
from conr.errors import ConrError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render a character in every pose of a sequence",
        description="Render the character of a character sheet in every pose of a pose sequence, "
                    "one RGBA PNG per pose frame, optionally encoded as a video.",
    )
    p.add_argument("--sheets", nargs="+", required=True, metavar="PATH",
                   help="a folder of cut-out RGBA PNGs, or several PNG files: the character sheet")
    p.add_argument("--poses", nargs="+", required=True, metavar="PATH",
                   help="a folder of pose frames (natural order) or files: UDP .npz/.exr/16-bit .png, "
                        "or RGBA pose images")
    p.add_argument("--pose-kind", choices=["auto", "udp", "image"], default="auto",
                   help="what the pose frames are (default: from the extension and PNG bit depth)")
    p.add_argument("--weights", metavar="PATH",
                   help="the original release's folder of four .pth files, a .safetensors file or a `conr train` "
                        "run folder (default: the model bundled with conr)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the RGBA PNG frames")
    p.add_argument("--video", metavar="FILE", help="also encode the frames: .mp4, .webm, .mov or .gif")
    p.add_argument("--fps", type=FPS, default=30.0, help="video frame rate (default 30)")
    p.add_argument("--background", default="white",
                   help="colour behind the character in .mp4/.gif videos (name or #RRGGBB; default white)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=ranged(int, 1, 256), default=1, help="frames rendered together (default 1)")
    p.add_argument("--size", type=SIZE, default=None,
                   help="network resolution, a multiple of 128 (default: the model's own, the size it was trained at)")
    p.add_argument("--precision", choices=["fp32", "fast"], default="fp32",
                   help="fp32 (exact, default) or fast (half precision on CUDA, bfloat16 on CPU)")
    p.add_argument("--alpha", choices=["premultiplied", "straight"], default="premultiplied",
                   help="PNG colour convention: premultiplied RGB as the original writes (default), "
                        "or straight alpha")
    p.add_argument("--save-udp", action="store_true",
                   help="with pose images: also write the predicted UDP maps to OUT/udp/*.npz")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace existing frames and video")
    g.add_argument("--resume", action="store_true", help="keep frames already in OUT and render the rest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _one_or_list(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _broken_frames(out: Path, names: set[str]) -> set[str]:
    """Frames in OUT that --resume cannot keep (empty, cut short, not a PNG: a copy that failed):
    they are drawn again rather than found broken when the video is encoded after the render."""
    from conr.files.io import read_png_header

    broken = set()
    for name in sorted(names):
        try:
            read_png_header(out / f"{name}.png", "frame")
        except ConrError as err:
            print(f"conr render: warning: {err.problem} ({out / f'{name}.png'}); drawing it again", file=sys.stderr)
            broken.add(name)
    return broken


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from conr.render.allocator import keep_freed_memory
    from conr.render.outputs import encode_videos, render_to_folder, staged_frames
    from conr.files.io import check_new_file, check_parent_folders
    from conr.render.pipeline import Renderer, check_sheet_views, find_poses, find_sheets, resolve_device
    from conr.files.video import parse_color

    out = Path(args.out)
    video = Path(args.video) if args.video else None
    background = parse_color(args.background)
    if args.batch_size < 1:
        raise ConrError(f"--batch-size must be at least 1 (got {args.batch_size})")

    # Everything is checked before anything is written.
    resolve_device(args.device)
    sheet_paths = find_sheets(_one_or_list(args.sheets))
    check_sheet_views(sheet_paths, args.sheets[0] if len(args.sheets) == 1 else None)
    poses = find_poses(_one_or_list(args.poses), args.pose_kind)
    if out.exists() and not out.is_dir():
        raise ConrError("output path exists and is not a folder", out)
    check_parent_folders(out)
    existing = {p.stem for p in out.glob("*.png")} if out.is_dir() else set()
    if existing and not (args.overwrite or args.resume):
        raise ConrError(f"output folder already holds {len(existing)} frame(s)", out,
                        "pass --overwrite to replace them, --resume to keep them and render the rest, "
                        "or choose another --out")
    if args.resume:
        existing -= _broken_frames(out, existing)
    if video is not None:
        if video.suffix.lower() not in (".mp4", ".webm", ".mov", ".gif"):
            raise ConrError(f"unsupported video format {video.suffix!r}", video, "use .mp4, .webm, .mov or .gif")
        check_new_file(video, args.overwrite, "--video")
    names = [s.name for s in poses]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConrError(f"several pose files share the name(s) {', '.join(dupes[:5])}; their frames would "
                        "overwrite each other", hint="give every pose file a distinct name")
    todo = [s for s in poses if not (args.resume and s.name in existing)]

    progress = not args.quiet
    if resolve_device(args.device).type == "cpu":
        keep_freed_memory()
    if args.weights is None:
        from conr.render.weights import BUNDLED

        print(f"weights: the bundled model ({BUNDLED.name}); pass --weights for others", file=sys.stderr)
    renderer = Renderer.from_weights(args.weights, device=args.device, precision=args.precision, size=args.size)
    sheet = renderer.load_sheet(sheet_paths)
    renderer.check_poses(tqdm(todo, desc="checking poses", unit="file", disable=not progress, leave=False))

    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="rendering", unit="frame", disable=not progress)
    # --overwrite: this render's frames replace the folder's, all at once when they are all drawn.
    replace = args.overwrite and (bool(existing) or (out / "udp").is_dir())
    with staged_frames(out, replace) as folder:
        render_to_folder(renderer, sheet, todo, folder, batch_size=args.batch_size, alpha=args.alpha,
                         save_udp=args.save_udp, on_frame=lambda: bar.update(1))
    bar.close()
    elapsed = time.perf_counter() - start
    rate = len(todo) / elapsed if elapsed > 0 else float("inf")
    skipped = len(poses) - len(todo)
    print(f"rendered {len(todo)} frame(s) in {elapsed:.1f} s ({rate:.2f} frames/s) on {renderer.device}"
          + (f", kept {skipped} existing" if skipped else "") + f" -> {out}", file=sys.stderr)

    if video is not None:
        bar = tqdm(total=len(poses), desc="encoding video", unit="frame", disable=not progress, leave=False)
        encode_videos([out / f"{s.name}.png" for s in poses], [video], args.fps, background,
                      premultiplied=args.alpha == "premultiplied", on_frame=lambda: bar.update(1))
        bar.close()
        print(f"video: {video}", file=sys.stderr)
    return 0
