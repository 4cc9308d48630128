"""Calls every API of ``client_io.py:ClientIO`` through a client and checks the values.

Shared by tests/test_client.py (bentohost's clients, imported) and tests/test_bentoml_clients.py
(the real ``bentoml`` clients: this file is run as a script in a virtualenv with bentoml 1.4, so it
must not import bentohost). Usage: ``python client_checks.py URL [bentoml|bentohost] [sync|async|all]``.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import BaseModel


REAL_BENTOML = False  # set by main(): the real bentoml clients are under test


class Point(BaseModel):
    x: float
    y: float
    label: str = "p"


def _png_file(tmp: Path) -> Path:
    img = Image.new("RGB", (4, 3), (10, 200, 30))
    path = tmp / "pixel.png"
    img.save(path)
    return path


def _check_image(img) -> None:
    assert isinstance(img, Image.Image), type(img)
    assert img.size == (4, 3), img.size
    assert img.convert("RGB").getpixel((0, 0)) == (245, 55, 225), img.convert("RGB").getpixel((0, 0))


def _check_error(exc: BaseException, code: int, text: str | None, base: type) -> None:
    assert isinstance(exc, base), type(exc)
    assert int(exc.error_code) == code, (exc.error_code, code)
    if text is not None:
        assert text in str(exc), str(exc)


def expected_stream_chunks(chunks: list, first_at: float, total: float) -> None:
    assert all(isinstance(c, str) for c in chunks), chunks
    assert "".join(chunks) == "tick 0\ntick 1\ntick 2\n", chunks
    # the first chunk arrived while the server was still producing the rest
    assert first_at < total - 0.2, (first_at, total)


def run_sync(client_cls, url: str, exc_base: type, tmp: Path) -> list[str]:
    done = []
    with client_cls(url, server_ready_timeout=30) as c:
        assert c.echo_str("héllo wörld") == "héllo wörld"
        assert c.echo_str(text="") == ""
        done.append("str")

        assert c.add(2) == 2.5
        assert c.add(1, 2.0, True) == 103.0
        assert c.add(a=1, b=2.25) == 3.25
        assert c.is_odd(3) is True and c.is_odd(n=4) is False
        done.append("scalars")

        assert c.containers([1, 2, 3], {"b": 1, "a": 2}) == {"sum": 6, "keys": ["a", "b"], "total": 3}
        done.append("containers")

        assert c.raw_bytes("ab") == b"abab"
        done.append("bytes")

        out = c.move(point=Point(x=1, y=2), dx=2)
        assert out == {"point": {"x": 3.0, "y": 2.0, "label": "p"}, "distance": 2.0}, out
        out = c.move({"x": 0, "y": 0, "label": "q"})
        assert out == {"point": {"x": 1.0, "y": 0.0, "label": "q"}, "distance": 1.0}, out
        done.append("pydantic")

        arr = c.scale(np.array([[1, 2], [3, 4]]), factor=3)
        assert isinstance(arr, np.ndarray), type(arr)
        assert arr.tolist() == [[3.0, 6.0], [9.0, 12.0]], arr
        done.append("numpy")

        assert c.frame_sum(pd.DataFrame({"a": [1, 2], "b": [3, 4.5]})) == [4.0, 6.5]
        done.append("dataframe")

        png = _png_file(tmp)
        _check_image(c.invert(Image.open(png)))
        done.append("pil")

        doc = tmp / "notes.txt"
        doc.write_text("hello file upload")
        info = c.file_info(document=doc, note="n1")
        assert info["name"].endswith("notes.txt"), info
        assert info["size"] == len("hello file upload") and info["head"] == "hello file uploa", info
        assert info["note"] == "n1", info
        done.append("file-in")

        path = c.make_file("made by the server", filename="made.txt")
        assert isinstance(path, Path), type(path)
        assert path.name.endswith("made.txt"), path
        assert path.read_text() == "made by the server"
        done.append("file-out")

        assert c.shout("abc") == "ABC"
        assert c.count_bytes(doc) == len("hello file upload")
        done.append("root")

        assert "".join(c.countdown(n=3)) == "3;2;1;"
        start = time.monotonic()
        chunks, first_at = [], None
        for chunk in c.slow_stream(n=3, delay=0.3):
            if first_at is None:
                first_at = time.monotonic() - start
            chunks.append(chunk)
        expected_stream_chunks(chunks, first_at, time.monotonic() - start)
        done.append("stream")

        for kind, code, text in (("bad", 400, "bad input, sorry"), ("missing", 404, "nothing here"), ("x", 500, None)):
            try:
                c.fail(kind)
            except exc_base as exc:  # noqa: PERF203
                _check_error(exc, code, text, exc_base)
            else:
                raise AssertionError(f"fail({kind!r}) did not raise")
        try:
            c.add(b=1.0)
        except TypeError:
            pass
        else:
            raise AssertionError("a missing required argument did not raise TypeError")
        done.append("errors")

        assert c.api_url() == "called!"
        done.append("name-clash")
    return done


async def run_async(client_cls, url: str, exc_base: type, tmp: Path) -> list[str]:
    done = []
    async with client_cls(url, server_ready_timeout=30) as c:
        assert await c.echo_str("héllo") == "héllo"
        assert await c.add(1, 2.0, True) == 103.0
        assert await c.containers(items=[1], mapping={"z": 5}) == {"sum": 1, "keys": ["z"], "total": 5}
        assert await c.raw_bytes("x") == b"xx"
        out = await c.move(Point(x=1, y=1), 0.5)
        assert out == {"point": {"x": 1.5, "y": 1.0, "label": "p"}, "distance": 0.5}, out
        arr = await c.scale(np.ones((2, 2), dtype=np.float64))
        assert isinstance(arr, np.ndarray) and arr.tolist() == [[2.0, 2.0], [2.0, 2.0]], arr
        assert await c.frame_sum(pd.DataFrame({"a": [1], "b": [1]})) == [2.0]
        _check_image(await c.invert(Image.open(_png_file(tmp))))
        doc = tmp / "async.txt"
        doc.write_text("async upload")
        info = await c.file_info(doc)
        assert info["name"].endswith("async.txt") and info["size"] == len("async upload"), info
        path = await c.make_file("async made")
        assert isinstance(path, Path) and path.read_text() == "async made", path
        assert await c.shout("quiet") == "QUIET"
        if not REAL_BENTOML:
            # bentoml 1.4's AsyncHTTPClient streams a root file with a sync iterator, which httpx's
            # AsyncClient refuses ("Attempted to send an sync request with an AsyncClient instance")
            assert await c.count_bytes(doc) == len("async upload")
        done.append("values")

        chunks = [chunk async for chunk in c.countdown(n=2)]
        assert "".join(chunks) == "2;1;", chunks
        start = time.monotonic()
        chunks, first_at = [], None
        async for chunk in c.slow_stream(n=3, delay=0.3):
            if first_at is None:
                first_at = time.monotonic() - start
            chunks.append(chunk)
        expected_stream_chunks(chunks, first_at, time.monotonic() - start)
        done.append("stream")

        # concurrency through one client
        results = await asyncio.gather(*(c.add(i) for i in range(8)))
        assert results == [i + 0.5 for i in range(8)], results

        try:
            await c.fail("bad")
        except exc_base as exc:
            _check_error(exc, 400, "bad input, sorry", exc_base)
        else:
            raise AssertionError("fail('bad') did not raise")
        assert await c.api_url() == "called!"
        done.append("errors")
    return done


def main(argv: list[str]) -> int:
    url = argv[1]
    flavour = argv[2] if len(argv) > 2 else "bentoml"
    mode = argv[3] if len(argv) > 3 else "all"
    global REAL_BENTOML
    if flavour == "bentoml":
        import bentoml

        REAL_BENTOML = True
        from bentoml.exceptions import BentoMLException

        sync_cls, async_cls = bentoml.SyncHTTPClient, bentoml.AsyncHTTPClient
    else:
        from bentohost.client import AsyncHTTPClient, SyncHTTPClient
        from bentohost.exceptions import BentoMLException

        sync_cls, async_cls = SyncHTTPClient, AsyncHTTPClient
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if mode in ("sync", "all"):
            print("sync ok:", ", ".join(run_sync(sync_cls, url, BentoMLException, tmp)), flush=True)
        if mode in ("async", "all"):
            done = asyncio.run(run_async(async_cls, url, BentoMLException, tmp))
            print("async ok:", ", ".join(done), flush=True)
    print("ALL OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
