"""`conr parse`: what the UDP parser understood of some images, as UDP frames, pictures and a point cloud."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from conr.errors import ConrError
from conr.commands.options import SIZE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "parse", help="the UDP parser's reading of images: UDP frames, pictures, a point cloud",
        description="Run the UDP parser on cut-out images (sheet views or pose images) and write, for each "
                    "IMAGE, OUT/NAME.npz (its UDP at the image's size, the format `conr render --poses` reads) "
                    "and OUT/NAME.png (the UDP as a picture: rest-pose X, Y, Z as red, green, blue). With --ply, "
                    "also every visible pixel of every image as a coloured point in rest-pose space: a sheet whose "
                    "views were understood makes one character-shaped cloud; a misread view floats apart.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="cut-out RGBA PNGs, or a folder of them")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .npz and .png files")
    p.add_argument("--ply", metavar="FILE", help="also write the images' pixels as a point cloud (.ply)")
    p.add_argument("--weights", metavar="PATH", help="weights (default: the bundled model)")
    p.add_argument("--size", type=SIZE, default=None, help="resolution (default: the model's own)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder or point cloud")
    p.set_defaults(func=run)


def udp_picture(udp: np.ndarray) -> np.ndarray:
    """(H, W, 4) UDP -> uint8 RGBA: XYZ as colour where visible, transparent elsewhere."""
    vis = udp[:, :, 3:4] > 0.5
    rgb = np.where(vis, udp[:, :, :3], 0.0)
    return (np.concatenate([rgb, vis.astype(np.float32)], axis=2) * 255 + 0.5).clip(0, 255).astype(np.uint8)


def point_cloud(images: list[np.ndarray], udps: list[np.ndarray]) -> bytes:
    """Binary little-endian PLY: one vertex (x, y, z float32; red, green, blue uint8) per visible
    pixel of every image, at its rest-pose position, in the image's own (straight) colour."""
    points, colours = [], []
    for img, udp in zip(images, udps):
        vis = (udp[:, :, 3] > 0.5) & (img[:, :, 3] > 127)
        points.append(udp[:, :, :3][vis].astype("<f4"))
        colours.append(img[:, :, :3][vis].astype(np.uint8))
    xyz, rgb = np.concatenate(points), np.concatenate(colours)
    vertex = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                       ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\ncomment conr parse: rest-pose UDP coordinates\n"
              f"element vertex {len(vertex)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    return header.encode("ascii") + vertex.tobytes()


def run(args: argparse.Namespace) -> int:
    from conr.files.io import (atomic_dir, atomic_save_npz, atomic_write_bytes, atomic_write_png, check_new_dir,
                               check_new_file, read_rgba)
    from conr.render.pipeline import Renderer, find_sheets

    paths = find_sheets(args.inputs[0] if len(args.inputs) == 1 else args.inputs)
    out = Path(args.out)
    check_new_dir(out, args.overwrite)
    ply = Path(args.ply) if args.ply else None
    if ply is not None:
        check_new_file(ply, args.overwrite, "--ply")
    stems = [p.stem for p in paths]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ConrError(f"several images share the name(s) {', '.join(dupes[:5])}; their files would overwrite "
                        "each other", hint="give every image a distinct name")
    images = [read_rgba(p, what="image") for p in paths]  # every image checked before anything is written
    if args.weights is None:
        print("weights: the bundled model; pass --weights for others", file=sys.stderr)
    renderer = Renderer.from_weights(args.weights, device=args.device, size=args.size)
    udps = renderer.parse_images(images, [str(p) for p in paths])
    with atomic_dir(out) as tmp:
        for path, udp in zip(paths, udps):
            atomic_save_npz(tmp / f"{path.stem}.npz", i=udp.astype(np.float32))
            atomic_write_png(tmp / f"{path.stem}.png", udp_picture(udp))
    if ply is not None:
        atomic_write_bytes(ply, point_cloud(images, udps))
    visible = [float((u[:, :, 3] > 0.5).sum() / max(1, (i[:, :, 3] > 127).sum())) for u, i in zip(udps, images)]
    for path, share in zip(paths, visible):
        print(f"{path.name}: the parser sees a body in {share:.0%} of the character's pixels", file=sys.stderr)
    print(f"wrote {len(paths)} UDP frame(s) and picture(s) to {out}" + (f", point cloud {ply}" if ply else ""),
          file=sys.stderr)
    return 0
