"""Training samples from the folders conr writes: `conr synth` and `conr poses --sheet N --rgba`.

A sample is one target pose of one character with a subset of that character's sheet views, all
cut and resized to the network size exactly as rendering does (`conr.render.preprocess`); training draws
random crops around the same boxes. Tensors (S = network size, V = views):

    sheet_rgb (V, 3, S, S)  premultiplied RGB      sheet_alpha (V, 1, S, S)
    sheet_udp (V, 4, S, S)  the views' UDP labels  target_udp (4, S, S), target_alpha (1, S, S)
    target_rgba (4, S, S)   ground truth, premultiplied
    flow (V, 3, S, S)       each view's correspondence flow and where it is valid
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from conr.errors import ConrError
from conr.files.io import read_png_header, read_rgba
from conr.files.udp import read_udp
from conr.models.lookup_shader import INK_INPUTS, LINE_BANDS, sheet_ink
from conr.render.preprocess import Crop, prepare_image, prepare_udp, premultiply, apply_crop, square_crop, to_unit
from conr.training.augment import Photometric
from conr.training.correspondence import correspondence_flow

_LAYOUTS = ("a `conr synth` folder (manifest.json) or a `conr poses MODEL MOTION --sheet 4 --rgba` "
            "folder (poses.json)")


@dataclass(frozen=True)
class Character:
    """One character: its sheet views (image, UDP) and its target frames (UDP, RGBA)."""

    name: str  # unique over all data folders: "<folder>/<id>"
    sheet: tuple[tuple[Path, Path], ...]
    frames: tuple[tuple[Path, Path], ...]
    # How `conr synth` drew its outline, when the manifest says: width (px at 512 px image height) and
    # colour. The lookup shader's line head learns from it (LossWeights.lines).
    outline: tuple[float, float, float, float] | None = None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConrError(f"cannot read ({err})", path, "regenerate the folder with the command that made it") from None


def _sheet_of(entries: list, root: Path, where: Path, fix: str) -> tuple[tuple[Path, Path], ...]:
    if not entries:
        raise ConrError("has no character sheet views", where, fix)
    sheet = []
    for e in entries:
        if "udp" not in e:
            raise ConrError(f"sheet view {e.get('file')} has no UDP (needed to train the UDP parser)", where, fix)
        sheet.append((root / e["file"], root / e["udp"]))
    return tuple(sheet)


def _outline_of(c: dict) -> tuple[float, float, float, float] | None:
    shading = (c.get("style") or {}).get("shading") or {}
    if "outline_px" not in shading:
        return None
    px = float(shading["outline_px"])
    return (px, *(float(x) for x in shading.get("outline_colour", (0.0, 0.0, 0.0))[:3])) if px > 0 else (0.0, 0.0, 0.0, 0.0)


def read_data_folder(folder: str | Path) -> list[Character]:
    """The characters of one data folder, of either layout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConrError("data folder does not exist" if not folder.exists() else "is not a folder", folder,
                        f"pass {_LAYOUTS}")
    try:
        return _read_layout(folder)
    except (KeyError, TypeError, AttributeError, ValueError) as e:  # a field missing or of another type
        name = "manifest.json" if (folder / "manifest.json").is_file() else "poses.json"
        raise ConrError(f"malformed {name} ({type(e).__name__}: {e})", folder / name,
                        "make the folder again with `conr synth` or `conr poses`") from None


def _read_layout(folder: Path) -> list[Character]:
    tag = folder.resolve().name
    if (folder / "manifest.json").is_file():
        manifest = _read_json(folder / "manifest.json")
        chars = []
        fix = "make it again with `conr synth` (targets and sheet UDP are written by default)"
        for c in manifest.get("characters", []):
            root = folder / c["id"]
            if not c.get("target"):
                raise ConrError(f"character {c['id']} has no target images (made with --no-targets?)",
                                folder / "manifest.json", fix)
            chars.append(Character(f"{tag}/{c['id']}", _sheet_of(c.get("sheet", []), root, folder / "manifest.json", fix),
                                   tuple((root / u, root / t) for u, t in zip(c["udp"], c["target"])),
                                   _outline_of(c)))
        if not chars:
            raise ConrError("manifest lists no characters", folder / "manifest.json", fix)
        return chars
    if (folder / "poses.json").is_file():
        poses = _read_json(folder / "poses.json")
        fix = "make it again with `conr poses MODEL MOTION --sheet 4 --rgba`"
        if not poses.get("rgba"):
            raise ConrError("has no RGBA renders of the frames (the training targets)", folder / "poses.json", fix)
        sheet = _sheet_of(poses.get("sheet", []), folder, folder / "poses.json", fix)
        frames = tuple((folder / u, folder / r) for u, r in zip(poses["frames"], poses["rgba"]))
        return [Character(f"{tag}/model", sheet, frames)]
    raise ConrError("is not a training data folder: no manifest.json or poses.json", folder, f"pass {_LAYOUTS}")


def read_data(folders: Sequence[str | Path]) -> list[Character]:
    chars = [c for f in folders for c in read_data_folder(f)]
    names = [c.name for c in chars]
    if len(set(names)) != len(names):
        raise ConrError("two data folders have the same name, so their characters cannot be told apart",
                        hint="give each --data folder its own name")
    return chars


def _png_size(path: Path, what: str) -> tuple[int, int]:
    """(height, width) of a whole RGBA PNG, from its header."""
    h, w, colour = read_png_header(path, what)
    if colour != 6:  # colour type 6: RGBA
        raise ConrError(f"{what} is not an RGBA PNG", path, "training images need an alpha channel")
    return h, w


def _udp_shape(path: Path) -> tuple[int, ...]:
    """The shape of a UDP .npz's array 'i', from its header (the data is not inflated)."""
    if path.suffix.lower() != ".npz":
        return read_udp(path).shape
    if not path.is_file():
        raise ConrError("UDP frame is missing", path, "regenerate the data folder")
    try:
        with zipfile.ZipFile(path) as zf, zf.open("i.npy") as f:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(f))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as err:
        raise ConrError(f"UDP frame is corrupt or truncated ({err})", path, "regenerate the data folder") from None
    if len(shape) != 3 or shape[2] != 4 or dtype.kind != "f":
        raise ConrError(f"UDP frame has shape {shape} and dtype {dtype}; expected float (H, W, 4)", path,
                        "regenerate the data folder")
    return shape


def check_files(characters: Sequence[Character], log=None) -> None:
    """Check every file's header (present, whole, of the right shape) so that a bad one stops the
    run by name before the first step, without decoding thousands of images."""
    pairs = [pair for c in characters for pair in c.sheet + tuple((t, u) for u, t in c.frames)]
    for n, (img, udp) in enumerate(pairs):
        h, w = _png_size(img, "training image")
        shape = _udp_shape(udp)
        if (h, w) != tuple(shape[:2]):
            raise ConrError(f"image is {w}x{h} but its UDP {udp.name} is {shape[1]}x{shape[0]}", img,
                            "regenerate the data folder")
        if log is not None:
            log(n + 1, len(pairs))


def split_characters(characters: Sequence[Character], validation: int) -> tuple[list[Character], list[Character]]:
    """Split by character, never by frame. The validation characters are chosen by a hash of their
    names, so the split does not change when data folders are added or reordered."""
    if validation >= len(characters):
        raise ConrError(f"--val-characters {validation} leaves nothing to train on "
                        f"({len(characters)} characters in the data)", hint="lower --val-characters")
    ranked = sorted(characters, key=lambda c: hashlib.sha1(c.name.encode()).hexdigest())
    val = {c.name for c in ranked[:validation]}
    return [c for c in characters if c.name not in val], [c for c in characters if c.name in val]


# ---------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class CropJitter:
    """Random resized crop around the alpha's bounding box, with zero padding where it leaves the
    image (the original loader's augmentation). scale: the crop's side over the box's longer
    side; ratio: the crop's height over width; shift: of the centre, as a fraction of the box."""

    scale: tuple[float, float] = (0.9, 1.25)
    ratio: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.06

    def __call__(self, alpha: np.ndarray, rng: np.random.Generator) -> Crop | None:
        base = square_crop(alpha)
        if base is None:
            return None
        h, w = alpha.shape
        side = base.padded_h
        box_top, box_left = base.top - base.pad_top, base.left - base.pad_left  # the square, unclipped
        ratio = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        ch = max(2, int(round(side * rng.uniform(*self.scale) * math.sqrt(ratio))))
        cw = max(2, int(round(side * rng.uniform(*self.scale) / math.sqrt(ratio))))
        cy = box_top + side / 2 + rng.uniform(-self.shift, self.shift) * side
        cx = box_left + side / 2 + rng.uniform(-self.shift, self.shift) * side
        return _window(h, w, int(round(cy - ch / 2)), int(round(cx - cw / 2)), ch, cw) or base


def _window(h: int, w: int, top: int, left: int, ch: int, cw: int) -> Crop | None:
    """The ch x cw window at (top, left) of an h x w image, zero-padded where it leaves the image;
    None if it misses the image altogether."""
    c_top, c_left = max(top, 0), max(left, 0)
    c_bottom, c_right = min(top + ch, h), min(left + cw, w)
    if c_bottom <= c_top or c_right <= c_left:
        return None
    return Crop(h, w, c_top, c_bottom, c_left, c_right, c_top - top, top + ch - c_bottom,
                c_left - left, left + cw - c_right, ch, cw)


@dataclass(frozen=True)
class NativeWindow:
    """A `size` x `size` window around the alpha's bounding box at the image's own pixel scale,
    shifted at random by up to `shift` of the box: what the lookup family's shader sees when
    `conr render` draws frames at their own size (outline and edges as wide as there, not zoomed).
    A box larger than the window is taken whole (and resized), as rendering caps the size."""

    size: int
    shift: float = 0.06

    def __call__(self, alpha: np.ndarray, rng: np.random.Generator) -> Crop | None:
        base = square_crop(alpha)
        if base is None or base.padded_h >= self.size:
            return base
        h, w = alpha.shape
        box = base.padded_h
        cy = base.top - base.pad_top + box / 2 + rng.uniform(-self.shift, self.shift) * box
        cx = base.left - base.pad_left + box / 2 + rng.uniform(-self.shift, self.shift) * box
        top, left = int(round(cy - self.size / 2)), int(round(cx - self.size / 2))
        return _window(h, w, top, left, self.size, self.size) or base


# ---------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleKey:
    """What the sampler asks for: a frame, how many sheet views, and the seed of its randomness."""

    item: int
    views: int
    seed: int | None  # None: no augmentation, the first `views` views in order (evaluation)


def _mirror(sample: dict[str, Tensor], keys: tuple[str, ...], view: int | None, flip: bool) -> None:
    """Mirror one image of a sample, and its UDP (the last key): X * A becomes (1 - X) * A. Out of
    place: a sample's tensors may share memory (the target's alpha is its UDP's visibility)."""
    if not flip:
        return
    new = {}
    for key in keys:
        t = sample[key].clone()
        part = t if view is None else t[view]
        part.copy_(part.flip(-1))
        new[key] = t
    udp = new[keys[-1]] if view is None else new[keys[-1]][view]
    udp[0] = udp[3] - udp[0]
    sample.update(new)


class SampleSet(Dataset):
    """(character, target frame) pairs of some characters."""

    def __init__(self, characters: Sequence[Character], size: int,
                 jitter: CropJitter | NativeWindow | None = CropJitter(),
                 flow: bool = True, photometric: Photometric | None = None, line_profiles: bool = False,
                 mirror: bool = False):
        """photometric: each image's own random look (for the UDP parser alone: the target images
        then no longer match the sheet's colours). mirror: each image mirrored half the time, its UDP's
        X with it (1 - X; for the UDP parser alone: `conr synth` turns its side views one way, drawn
        sheets face either way). line_profiles: each sample also carries its sheet's
        edge profile ("sheet_profile", as the line head reads it), worked out once per character and
        set of views: the line head alone (`--stage lines`) trains on nothing else."""
        self.characters = list(characters)
        self.photometric = photometric
        self.line_profiles = line_profiles
        if mirror and flow:
            raise ValueError("mirrored images have no correspondences with the unmirrored ones")
        self.mirror = mirror
        self._profiles: dict[tuple[int, tuple[int, ...]], Tensor] = {}
        self.items = [(c, f) for c in range(len(self.characters)) for f in range(len(self.characters[c].frames))]
        self.size = size
        self.jitter = jitter
        self.flow = flow
        self.max_views = min(len(c.sheet) for c in self.characters)

    def __len__(self) -> int:
        return len(self.items)

    def _crop(self, alpha: np.ndarray, rng: np.random.Generator | None) -> Crop | None:
        if rng is None or self.jitter is None:
            return square_crop(alpha)
        return self.jitter(alpha, rng)

    def _look(self, rgba: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        return rgba if rng is None or self.photometric is None else self.photometric(rgba, rng)

    def __getitem__(self, key: SampleKey | int) -> dict[str, Tensor]:
        if isinstance(key, int):
            key = SampleKey(key, self.max_views, None)
        ci, fi = self.items[key.item]
        char = self.characters[ci]
        rng = None if key.seed is None else np.random.default_rng(key.seed)
        order = np.arange(len(char.sheet)) if rng is None else rng.permutation(len(char.sheet))
        views = [char.sheet[i] for i in order[:key.views]]
        s = self.size

        udp_path, rgba_path = char.frames[fi]
        udp = read_udp(udp_path)
        as_u8 = (udp[:, :, 3] * 255).clip(0, 255).astype(np.uint8)
        crop = self._crop(as_u8, rng)
        if crop is None:
            raise ConrError("the target frame shows (almost) no surface", udp_path, "remove the frame from the data")
        target = prepare_udp(udp, s, crop)
        rgba = self._look(read_rgba(rgba_path, what="target image"), rng)
        # The outline's width in this sample's pixels (-1: not known), and its colour.
        outline = torch.tensor([-1.0, 0.0, 0.0, 0.0])
        if char.outline is not None:
            outline = torch.tensor(char.outline)
            outline[0] *= rgba.shape[0] / 512 * s / crop.padded_h
        rgba = apply_crop(premultiply(rgba), crop, s)

        sheet_rgb, sheet_alpha, sheet_udp = [], [], []
        for img_path, view_udp_path in views:
            img = self._look(read_rgba(img_path), rng)
            vcrop = self._crop(img[:, :, 3], rng)
            prepared = prepare_image(img, s, vcrop)
            if prepared is None:
                raise ConrError("the sheet view shows (almost) nothing", img_path, "remove it from the data")
            sheet_rgb.append(prepared.rgb)
            sheet_alpha.append(prepared.alpha)
            label = apply_crop(read_udp(view_udp_path), prepared.crop, s, label=True)
            sheet_udp.append(torch.from_numpy(np.ascontiguousarray(label.transpose(2, 0, 1))))

        assert target is not None
        sample = {
            "sheet_rgb": torch.stack(sheet_rgb), "sheet_alpha": torch.stack(sheet_alpha),
            "sheet_udp": torch.stack(sheet_udp), "target_udp": target.label, "target_alpha": target.alpha,
            "target_rgba": to_unit(rgba), "outline": outline,
        }
        if self.mirror and rng is not None:  # drawn last: the other draws stay as they were without it
            _mirror(sample, ("target_rgba", "target_alpha", "target_udp"), None, rng.random() < 0.5)
            for i, flip in enumerate(rng.random(len(views)) < 0.5):
                _mirror(sample, ("sheet_rgb", "sheet_alpha", "sheet_udp"), i, bool(flip))
        if self.flow:
            sample["flow"] = correspondence_flow(sample["target_udp"], sample["sheet_udp"])
        if self.line_profiles:
            seen = (ci, tuple(sorted(int(i) for i in order[:key.views])))
            if seen not in self._profiles:
                reference = torch.cat([sample["sheet_rgb"], sample["sheet_alpha"]], 1)[None]
                self._profiles[seen] = sheet_ink(reference, LINE_BANDS)[0, INK_INPUTS:]
            sample["sheet_profile"] = self._profiles[seen]
        return sample


class StepSampler(Sampler):
    """Yields, for training step after step, this process's share of the global batch.

    Everything random about a step (which frames, how many views, each sample's crops and view order)
    is a function of (seed, step), so a resumed run sees exactly the batches an unbroken one would,
    and N processes together see the batch one process would.
    """

    def __init__(self, items: int, batch_size: int, seed: int, views: tuple[int, int], start_step: int = 0,
                 steps: int | None = None, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ConrError(f"--batch-size {batch_size} does not split evenly over {world_size} processes",
                            hint=f"use a multiple of {world_size}")
        self.items, self.batch_size, self.seed, self.views = items, batch_size, seed, views
        self.start_step, self.steps = start_step, steps
        self.rank, self.world_size = rank, world_size
        self._order: tuple[int, np.ndarray] = (-1, np.empty(0))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, 1, epoch]).permutation(self.items))
        return self._order[1]

    def batch(self, step: int) -> list[SampleKey]:
        rng = np.random.default_rng([self.seed, 2, step])
        views = int(rng.integers(self.views[0], self.views[1] + 1))
        per_rank = self.batch_size // self.world_size
        keys = []
        for j in range(self.rank * per_rank, (self.rank + 1) * per_rank):
            pos = step * self.batch_size + j
            epoch, k = divmod(pos, self.items)
            seed = int(np.random.SeedSequence([self.seed, 3, step, j]).generate_state(1)[0])
            keys.append(SampleKey(int(self._epoch_order(epoch)[k]), views, seed))
        return keys

    def __iter__(self) -> Iterator[list[SampleKey]]:
        step = self.start_step
        while self.steps is None or step < self.steps:
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:
        return (self.steps or 0) - self.start_step
