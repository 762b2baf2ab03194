"""Loading and saving CoNR weights.

Two formats:
- the original release: a folder with four `.pth` state dicts, one per network part, read with
  `torch.load(weights_only=True)` (never arbitrary unpickling);
- ours: one `.safetensors` file whose keys are prefixed by the part name and whose metadata holds
  the architecture config (a `config.json` beside the file is used when the metadata has none).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save
from torch import Tensor

from conr.errors import ConrError
from conr.files.io import atomic_write_bytes
from conr.models import CoNR, CoNRConfig, preset
from conr.models.conr import LOOKUP_PARTS, PARTS

StateDicts = dict[str, dict[str, Tensor]]

ORIGINAL_FILES = tuple(f"{p}.pth" for p in PARTS)


def is_original_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ORIGINAL_FILES)


def _clean_keys(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # Checkpoints saved from DistributedDataParallel carry a `module.` prefix.
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def read_original(folder: str | Path) -> StateDicts:
    """Read the original release's four `.pth` files from `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConrError("weights folder not found", folder,
                        f"pass the folder that holds {', '.join(ORIGINAL_FILES)} or a .safetensors file")
    missing = [f for f in ORIGINAL_FILES if not (folder / f).is_file()]
    if missing:
        raise ConrError(f"missing weight file(s): {', '.join(missing)}", folder,
                        f"the original release's weights are four files: {', '.join(ORIGINAL_FILES)}")
    out: StateDicts = {}
    for part, fname in zip(PARTS, ORIGINAL_FILES):
        path = folder / fname
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # unpickling refused, truncated zip, not a checkpoint at all
            raise ConrError(f"cannot read as a PyTorch state dict ({type(err).__name__}: "
                            f"{str(err).splitlines()[0][:200]})", path,
                            "re-download the file; only plain state dicts of tensors are accepted") from None
        if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
            raise ConrError("is not a state dict of tensors", path, "use the original release's weight files")
        out[part] = _clean_keys(sd)
    return out


def check_state_dict(module: torch.nn.Module, sd: Mapping[str, Tensor], source: Path) -> None:
    """Raise a ConrError naming missing, unexpected and mis-shaped keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})"
              for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    # Integer or boolean tensors where the model has floats would fail deep inside torch; NaN or
    # infinite weights would draw nothing and blame the sheet.
    kinds = [f"{k} ({sd[k].dtype})" for k, v in expected.items()
             if k in sd and v.is_floating_point() and not sd[k].is_floating_point()]
    broken = [k for k, v in expected.items()
              if k in sd and sd[k].is_floating_point() and not bool(torch.isfinite(sd[k]).all())]
    if not (missing or unexpected or shapes or kinds or broken):
        return

    def head(items: list[str]) -> str:
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        return ", ".join(items[:5]) + more

    problems = []
    if missing:
        problems.append(f"missing keys: {head(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {head(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes: {head(shapes)}")
    if kinds:
        problems.append(f"not floating point: {head(kinds)}")
    if broken:
        problems.append(f"NaN or infinite values: {head(broken)}")
    if missing or unexpected or shapes:
        raise ConrError("checkpoint does not match the model architecture; " + "; ".join(problems), source,
                        "use weights made for this architecture (the original release's, or ones converted/"
                        "trained with conr for the same preset)")
    raise ConrError("checkpoint holds values no trained model has; " + "; ".join(problems), source,
                    "the file is damaged or came from a run that diverged: use another file or checkpoint")


def build_model(cfg: CoNRConfig, sds: StateDicts, source: Path) -> CoNR:
    """Create the model without random initialisation and load `sds` strictly."""
    with torch.device("meta"):
        model = CoNR(cfg)
    for part in model.parts:
        module = model.part(part)
        sd = sds.get(part)
        if sd is None:
            raise ConrError(f"no weights for part {part!r}", source)
        check_state_dict(module, sd, source)
        # Weights may be stored in half precision (the bundled model is); the model runs in float32.
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
        module.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


_ALL_PARTS = tuple(dict.fromkeys(PARTS + LOOKUP_PARTS))


def flatten(sds: StateDicts) -> dict[str, Tensor]:
    return {f"{part}.{k}": v.contiguous() for part in sds for k, v in sds[part].items()}


def unflatten(flat: Mapping[str, Tensor]) -> StateDicts:
    sds: StateDicts = {}
    for key, v in flat.items():
        part, _, rest = key.partition(".")
        if part not in _ALL_PARTS:
            raise KeyError(key)
        sds.setdefault(part, {})[rest] = v
    return sds


def state_dicts(model: CoNR) -> StateDicts:
    """Each part's state dict, on the CPU."""
    return {p: {k: v.detach().cpu() for k, v in model.part(p).state_dict().items()} for p in model.parts}


def save_safetensors(model: CoNR, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write all four parts and the config (and any other metadata) into one safetensors file, atomically."""
    data = st_save(flatten(state_dicts(model)), metadata={**(metadata or {}), "format": "conr", "config": model.cfg.to_json()})
    atomic_write_bytes(path, data)


def read_safetensors(path: str | Path) -> tuple[CoNRConfig, StateDicts]:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            flat = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise ConrError(f"cannot read as safetensors ({err})", path, "re-create it with `conr convert-weights`") from None
    text = meta.get("config")
    if text is None:
        side = path.with_name("config.json")
        if not side.is_file():
            raise ConrError("no model config in the file's metadata and no config.json beside it", path,
                            "re-create it with `conr convert-weights`, which stores the config")
        text = side.read_text()
    try:
        cfg = CoNRConfig.from_dict(json.loads(text))
    except Exception as err:
        raise ConrError(f"invalid model config ({err})", path) from None
    try:
        sds = unflatten(flat)
    except KeyError as err:
        raise ConrError(f"unexpected tensor {err} (keys must start with one of {', '.join(_ALL_PARTS)})", path) from None
    return cfg, sds


RUN_WEIGHTS = "model.safetensors"
# The model that ships inside the package (trained by `conr train`; its card is in the file's metadata).
BUNDLED = Path(__file__).parent.parent / "assets" / "conr-lookup.safetensors"


def training_meta(path: str | Path) -> dict:
    """What `conr train` recorded in a weights file (or a run folder's newest weights): {} if nothing."""
    path = Path(path)
    if path.is_dir():
        try:  # the run's own record
            return {**json.loads((path / "run.json").read_text())["config"], **training_meta(path / RUN_WEIGHTS)}
        except (OSError, ValueError, KeyError):
            path = path / RUN_WEIGHTS
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return json.loads((f.metadata() or {}).get("training", "{}"))
    except Exception:  # unreadable here: load_model says why when it reads the same file
        return {}


def load_model(path: str | Path | None = None, device: torch.device | str = "cpu") -> CoNR:
    """Load either weight format (the bundled model when no path is given); the original folder
    implies the `official` architecture."""
    path = BUNDLED if path is None else Path(path)
    if path.is_dir() and (path / RUN_WEIGHTS).is_file():
        path = path / RUN_WEIGHTS  # a `conr train` run folder: its newest weights
    ckpts = sorted((path / "checkpoints").glob("step_*/model.safetensors")) if path.is_dir() else []
    if path.is_dir() and ((path / "run.json").is_file() or ckpts) and not is_original_dir(path):
        raise ConrError(f"this `conr train` run folder has no {RUN_WEIGHTS} yet (the run is still going, or "
                        "stopped before it finished)", path,
                        f"give one of its checkpoints, e.g. --weights {ckpts[-1]}" if ckpts else
                        "the run saved no checkpoint either: resume it (conr train --resume) or train again")
    if path.is_dir():
        sds = read_original(path)
        model = build_model(preset("official"), sds, path)
    elif path.is_file():
        if path.suffix != ".safetensors":
            raise ConrError("unknown weights format", path,
                            "pass the original release's folder of four .pth files or a .safetensors file")
        cfg, sds = read_safetensors(path)
        model = build_model(cfg, sds, path)
    else:
        raise ConrError("weights not found", path,
                        "pass the original release's folder of four .pth files or a .safetensors file")
    return model.to(device)


def convert_original(folder: str | Path, out: str | Path) -> CoNR:
    """Convert the original release's folder into our single-file format."""
    folder = Path(folder)
    model = build_model(preset("official"), read_original(folder), folder)
    save_safetensors(model, out)
    return model
