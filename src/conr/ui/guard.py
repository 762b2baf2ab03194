"""Bounds on what the web UI's visitors may send, enforced where the bytes arrive.

Gradio caps each uploaded file; `UploadGuard` adds the two caps it lacks: the whole body of one
request (on every route: a file may also come base64 in JSON), and what the upload route may add to
the server's cache folder. It is plain ASGI, so a body streams through it as it comes (Starlette's
`BaseHTTPMiddleware` would read it whole first):
- a Content-Length over the cap is refused before a byte of the body is read;
- a body without one (chunked), or larger than its header says, is counted as it streams and the
  request is stopped at the first chunk past a cap.
A refusal is a plain-text 413 (too large) or 507 (cache full) that says what to do, and nothing of
the refused body is stored. Many clients read an answer only once they have sent their whole body,
so the HTTP server reads and drops the rest of a body that declares at most `DRAIN` times the cap
(its sender then gets the message); on any other, the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from starlette.formparsers import MultiPartException

# Gradio 6's upload route; tests/test_ui_uploads.py checks that the Gradio app still has it.
UPLOAD_PATHS = frozenset({"/gradio_api/upload"})
MB = 1024 * 1024  # as Gradio's "50mb" and conr.files.uploads read it
DRAIN = 4  # a visitor a little over the cap gets the message; one who claims gigabytes is cut off

log = logging.getLogger(__name__)


class Refused(MultiPartException):
    """Raised out of `receive` when a body passes a cap. A MultiPartException because that is the
    one exception on which Gradio's parser removes the partial files it was writing."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (what vanishes while it is walked counts nothing)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


class UploadGuard:
    """ASGI middleware: at most `max_request_bytes` in the body of any request, and uploads refused
    once the files under `cache` and the uploads still arriving would pass `max_cache_bytes`.

    `expiry` says, in the message of a full cache, when its files go (Gradio's `delete_cache`)."""

    def __init__(self, app, *, max_request_bytes: int, cache: str | Path, max_cache_bytes: int,
                 expiry: str = "an hour after they arrive", upload_paths: frozenset[str] = UPLOAD_PATHS):
        self.app = app
        self.max_request = max_request_bytes
        self.cache = Path(cache)
        self.max_cache = max_cache_bytes
        self.expiry = expiry
        self.upload_paths = upload_paths
        self.arriving = 0  # bytes received so far by uploads still streaming; one event loop, no lock

    def too_large(self, size: int | None) -> Refused:
        what = f"This request is {_mb(size)}" if size is not None else "This request is larger"
        return Refused(413, f"{what}, over this server's limit of {self.max_request / MB:g} MB for one "
                            f"upload (conr ui --max-request-mb). Send fewer or smaller files at a time.")

    def cache_full(self, used: int, size: int | None) -> Refused:
        this = f"this upload of {_mb(size)}" if size is not None else "this upload"
        return Refused(507, f"The server's upload space is full: it holds {_mb(used)} of uploads and results, "
                            f"its limit is {self.max_cache / MB:g} MB (conr ui --max-cache-mb), and {this} does "
                            f"not fit. Files there are removed {self.expiry}: try again later, or ask whoever "
                            f"runs the server to restart it or raise --max-cache-mb.")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        upload = scope["path"] in self.upload_paths
        try:
            if declared is not None and declared > self.max_request:
                raise self.too_large(declared)
            used = await asyncio.to_thread(folder_bytes, self.cache) if upload else 0
            if upload and used + self.arriving + (declared or 0) > self.max_cache:
                raise self.cache_full(used + self.arriving, declared)
        except Refused as refusal:
            await self.refuse(send, refusal, scope, declared)
            return

        received = 0
        refusal: Refused | None = None
        started = False

        async def counted() -> dict:
            nonlocal received, refusal
            if refusal is not None:
                raise refusal
            message = await receive()
            if message["type"] == "http.request":
                n = len(message.get("body", b""))
                received += n
                if upload:
                    self.arriving += n
                if received > self.max_request:
                    refusal = self.too_large(None)
                elif upload and used + self.arriving > self.max_cache:
                    refusal = self.cache_full(used + self.arriving - received, None)
                if refusal is not None:
                    raise refusal
            return message

        async def sent(message: dict) -> None:
            nonlocal started
            if refusal is not None:
                return  # the app's own answer to the aborted body (a 400, a 500): ours goes instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sent)
        except Exception:
            if refusal is None:
                raise
        finally:
            if upload:
                self.arriving -= received
        if refusal is not None and not started:
            await self.refuse(send, refusal, scope, declared)

    async def refuse(self, send, refusal: Refused, scope, declared: int | None) -> None:
        log.warning("refused %s %s: %s", scope.get("method"), scope["path"], refusal.message)
        body = refusal.message.encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        if declared is None or declared > DRAIN * self.max_request:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses such a request before it reaches us
    return None
