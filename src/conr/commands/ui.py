"""`conr ui`: serve the web UI (Gradio) on this machine."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from conr.commands.options import ranged


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help="serve the web UI: upload a sheet and poses, render, download",
        description="Serve a web page where a character sheet and poses (pose frames, a 3D model with a "
                    "motion, or the demo character) become a video. Renders queue, one at a time per device "
                    "by default. Also an API: gradio_client.Client(URL).predict(..., api_name='/render').",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for everyone)")
    p.add_argument("--port", type=ranged(int, 1, 65535), default=7860, help="port (default 7860)")
    p.add_argument("--weights", metavar="PATH", help="weights as for `conr render` (default: the bundled model)")
    p.add_argument("--device", default="auto", help="default device: auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--concurrency", type=ranged(int, 1, 64), default=1,
                   help="renders at the same time on each device (default 1); others wait in the queue")
    p.add_argument("--max-frames", type=ranged(int, 1, 100_000), default=300, help="frames per render (default 300)")
    p.add_argument("--max-seconds", type=ranged(float, 0.1, 86400), default=60.0, help="seconds of video per render (default 60)")
    p.add_argument("--max-files", type=ranged(int, 1, 1_000_000), default=500, help="files per input, zips expanded (default 500)")
    p.add_argument("--max-file-mb", type=ranged(float, 0.001, 1e6), default=50.0, help="size of one uploaded file (default 50 MB)")
    p.add_argument("--max-total-mb", type=ranged(float, 0.001, 1e6), default=500.0,
                   help="size of one input's files, zips expanded (default 500 MB)")
    p.add_argument("--max-request-mb", type=ranged(float, 0.001, 1e6), default=None,
                   help="size of one upload request, all its files together (default 4 x --max-file-mb)")
    p.add_argument("--max-cache-mb", type=ranged(float, 0.001, 1e7), default=2048.0,
                   help="uploads and results the server keeps at once (default 2048 MB); past it, uploads "
                        "are refused until files expire, an hour after they arrive")
    p.add_argument("--workdir", metavar="DIR",
                   help="where requests work, each in its own folder removed afterwards (default: TMP/conr-ui)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from conr.errors import ConrError, environment_error

    try:
        from conr.ui.app import serve, upload_caps
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in ("gradio", "gradio_client"):
            raise ConrError("the web UI needs Gradio, which is not installed",
                            hint="pip install -e '.[ui]' (the README's set-up installs it)") from None
        raise
    from conr.ui.service import RenderService, UILimits
    from conr.files.uploads import UploadLimits

    for name in ("concurrency", "max_frames", "max_files"):
        if getattr(args, name) < 1:
            raise ConrError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("max_seconds", "max_file_mb", "max_total_mb"):
        if not getattr(args, name) > 0:
            raise ConrError(f"--{name.replace('_', '-')} must be positive")
    upload_caps(args.max_file_mb, args.max_request_mb, args.max_cache_mb)  # before the model loads
    limits = UILimits(UploadLimits(max_files=args.max_files, max_file_mb=args.max_file_mb,
                                   max_total_mb=args.max_total_mb), args.max_frames, args.max_seconds)
    made = Path(args.workdir) if args.workdir and not Path(args.workdir).exists() else None
    service = RenderService(args.weights, args.device, limits, args.workdir, per_device=args.concurrency)
    print(f"conr ui: model {'bundled' if args.weights is None else args.weights} on {service.default_device}; "
          f"open http://{args.host}:{args.port}/ (Ctrl-C stops)", file=sys.stderr)
    try:
        serve(service, args.host, args.port, args.max_file_mb, max_request_mb=args.max_request_mb,
              max_cache_mb=args.max_cache_mb)
    except OSError as err:
        if environment_error(err) is not None:
            raise
        # The server could not listen: an address that is not this machine's, or a port in use.
        raise ConrError(f"cannot serve on {args.host}:{args.port} ({err})",
                        hint="give --host an address of this machine (127.0.0.1, or 0.0.0.0 for every "
                             "network) and --port a free port") from None
    finally:
        if made is not None:  # a --workdir this server made goes with it, if nothing is left in it
            with contextlib.suppress(OSError):
                made.rmdir()
    return 0
