"""The web UI's upload caps where the bytes arrive, against a real server: one request's body
(`--max-request-mb`) and the cache's total (`--max-cache-mb`); and a stopped server leaves no cache."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the web UI's extra is not installed: pip install -e '.[ui]'")
import httpx  # noqa: E402

from conr.files.uploads import UploadLimits  # noqa: E402
from conr.ui.guard import MB, UPLOAD_PATHS, UploadGuard  # noqa: E402

FILE_MB, REQUEST_MB, CACHE_MB = 1.0, 2.0, 6.0
UPLOAD = "/gradio_api/upload"
BOUNDARY = "conrtestboundary"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _server(root: Path, **caps):
    from conr.ui.app import serve
    from conr.ui.service import RenderService, UILimits

    work = root / "work"
    service = RenderService(None, "cpu", UILimits(UploadLimits(max_file_mb=FILE_MB)), work)
    port = _free_port()
    app = serve(service, "127.0.0.1", port, max_file_mb=FILE_MB, block=False, **caps)
    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    try:
        yield port, cache, app
    finally:
        app.close(verbose=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with _server(tmp_path_factory.mktemp("uploads"), max_request_mb=REQUEST_MB, max_cache_mb=CACHE_MB) as s:
        yield s


def _files(cache: Path) -> set[Path]:
    return {p for p in cache.rglob("*") if p.is_file()}


def _part(name: str, data: bytes) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"


def _body(*sizes_mb: float) -> bytes:
    """A multipart upload of one file per size, each of its own random bytes (Gradio keeps equal files once)."""
    return b"".join(_part(f"f{k}.bin", os.urandom(int(mb * MB))) for k, mb in enumerate(sizes_mb)) + \
        f"--{BOUNDARY}--\r\n".encode()


def _post(port: int, body: bytes) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}{UPLOAD}", content=body, timeout=30,
                      headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})


def _raw(port: int, head: dict[str, str], chunks=()) -> bytes:
    """Send the headers, then each chunk in HTTP/1.1 chunked encoding (no end), and read the answer.
    The chunks should pass the cap only at their end: a server that closes on a refusal resets the
    connection while a client still sends."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        lines = [f"POST {UPLOAD} HTTP/1.1", "Host: 127.0.0.1",
                 f"Content-Type: multipart/form-data; boundary={BOUNDARY}", *(f"{k}: {v}" for k, v in head.items())]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            for chunk in chunks:
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the last chunk: the answer is already here
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        return answer


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def test_gradio_still_has_the_route_the_guard_watches(server):
    _, _, app = server
    assert app.server_app.url_path_for("upload_file") in UPLOAD_PATHS  # Gradio's upload endpoint


def test_a_normal_upload_is_kept_and_the_page_still_renders(server):
    port, cache, _ = server
    body = _body(0.5, 0.5)
    r = _post(port, body)
    assert r.status_code == 200, r.text
    kept = [Path(p) for p in r.json()]
    assert len(kept) == 2 and all(p.parent.parent == cache and p.stat().st_size == MB // 2 for p in kept)
    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
    assert page.status_code == 200 and f"at most {REQUEST_MB:g} MB sent at once" in page.text
    for p in kept:
        p.unlink()


def test_a_request_over_the_cap_is_refused_with_its_message_and_nothing_kept(server):
    port, cache, _ = server
    before = _files(cache)
    r = _post(port, _body(0.8, 0.8, 0.8))  # each file under Gradio's own cap, together over ours
    assert r.status_code == 413
    assert "2.4 MB" in r.text and f"limit of {REQUEST_MB:g} MB" in r.text and "--max-request-mb" in r.text
    assert "fewer or smaller files" in r.text
    assert _files(cache) == before
    # The request cap holds for every route, not only uploads (a file may come base64 in JSON).
    r = httpx.post(f"http://127.0.0.1:{port}/gradio_api/queue/join", content=b" " * (3 * MB), timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "--max-request-mb" in r.text


def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_sent(server):
    port, cache, _ = server
    before = _files(cache)
    answer = _raw(port, {"Content-Length": str(10 * 1024 * MB)})  # 10 GB announced, not one byte sent
    assert answer.startswith(b"HTTP/1.1 413") and b"10240.0 MB" in answer and b"--max-request-mb" in answer
    assert b"connection: close" in answer.lower()
    assert _files(cache) == before


def test_a_body_without_a_length_is_stopped_as_it_streams_past_the_cap(server):
    port, cache, _ = server
    before = _files(cache)
    parts = [_part(f"f{k}.bin", os.urandom(MB // 2)) for k in range(4)]  # 2 MB and the parts' headers
    answer = _raw(port, {"Transfer-Encoding": "chunked"}, parts)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger, over this server's limit of 2 MB" in answer
    assert _files(cache) == before  # the parts Gradio had begun to write are gone


def test_a_body_longer_than_its_header_says_is_counted_not_trusted():
    """An HTTP server that does not hold a body to its Content-Length: the guard counts the bytes."""
    seen = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"kept"})

    async def run() -> list[dict]:
        chunks = [{"type": "http.request", "body": b"x" * 1000, "more_body": True} for _ in range(10)]
        chunks.append({"type": "http.request", "body": b"", "more_body": False})
        sent: list[dict] = []

        async def receive():
            return chunks.pop(0)

        async def send(message):
            sent.append(message)

        guard = UploadGuard(app, max_request_bytes=4000, cache=Path("/nonexistent"), max_cache_bytes=10**9)
        scope = {"type": "http", "method": "POST", "path": UPLOAD, "headers": [(b"content-length", b"100")]}
        await guard(scope, receive, send)
        return sent

    sent = asyncio.run(run())
    assert sum(seen) <= 5000  # stopped at the first chunk past the cap
    assert sent[0]["status"] == 413 and b"over this server's limit" in sent[1]["body"]
    assert b"kept" not in b"".join(m.get("body", b"") for m in sent)


def test_a_full_cache_refuses_uploads_until_it_has_room(tmp_path):
    with _server(tmp_path, max_request_mb=REQUEST_MB, max_cache_mb=3.0) as (port, cache, _):
        assert _post(port, _body(0.9, 0.9)).status_code == 200
        full = _post(port, _body(0.9, 0.9))  # 1.8 MB more than the 3 MB cache holds
        assert full.status_code == 507
        for words in ("upload space is full", "limit is 3 MB", "--max-cache-mb", "try again later", "restart"):
            assert words in full.text, f"{words!r} not in {full.text!r}"
        # Without a length, the stream is stopped where the cache fills: 1.8 MB held, 1.2 MB and headers sent.
        answer = _raw(port, {"Transfer-Encoding": "chunked"}, [_part(f"f{k}.bin", os.urandom(4 * MB // 10))
                                                               for k in range(3)])
        assert answer.startswith(b"HTTP/1.1 507") and b"upload space is full" in answer
        assert len(_files(cache)) == 2
        for p in _files(cache):  # what Gradio's delete_cache does an hour later
            p.unlink()
        assert _post(port, _body(0.9, 0.9)).status_code == 200


def test_a_stopped_server_leaves_no_cache(tmp_path):
    with _server(tmp_path) as (port, cache, app):
        assert _post(port, _body(0.1)).status_code == 200 and _files(cache)
    assert not cache.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and not list((tmp_path / "work").iterdir())


def test_a_server_nobody_closed_leaves_no_cache_at_exit(tmp_path):
    """serve(block=False) and the process ends without close(): atexit removes the cache."""
    port = _free_port()
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        import httpx
        from conr.ui.app import serve
        from conr.ui.service import RenderService
        service = RenderService(None, "cpu", workdir=Path({str(tmp_path / "work")!r}))
        serve(service, "127.0.0.1", {port}, max_file_mb=1.0, block=False)
        cache = Path(os.environ["GRADIO_TEMP_DIR"])
        body = b'--b\\r\\nContent-Disposition: form-data; name="files"; filename="a.bin"\\r\\n\\r\\nabc\\r\\n--b--\\r\\n'
        r = httpx.post("http://127.0.0.1:{port}{UPLOAD}", content=body,
                       headers={{"content-type": "multipart/form-data; boundary=b"}})
        assert r.status_code == 200 and any(p.is_file() for p in cache.rglob("*")), r.text
        print(cache)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cache = Path(done.stdout.strip().splitlines()[-1])
    assert cache.parent == tmp_path and not cache.exists()
