"""``_formdata.encode``: the multipart body a JSON-mode proxy sends for file and image
arguments, read back with the standard library's MIME parser."""

from __future__ import annotations

import email.parser
import email.policy
from pathlib import Path

from PIL import Image

from bentohost import _formdata


def parse(ctype: str, parts: list) -> list:
    raw = f"Content-Type: {ctype}\r\n\r\n".encode() + b"".join(bytes(p) for p in parts)
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_content_type(),
             p.get_payload(decode=True)) for p in msg.iter_parts()]


def test_files_fields_and_lists(tmp_path: Path):
    a = tmp_path / 'we"ird.txt'
    a.write_bytes(b"alpha\r\n--not a boundary\r\n")
    b = tmp_path / "b.png"
    Image.new("RGB", (2, 2), (1, 2, 3)).save(b)
    img = Image.open(b)
    ctype, parts = _formdata.encode(
        {"doc": a, "docs": [a, b"raw"], "pic": img, "none": None, "note": "007", "n": 3, "tags": ["x"],
         "maybe": None, "url": "http://example.com/f.txt"},
        {"doc", "docs", "pic", "none", "url"},
    )
    assert ctype.startswith("multipart/form-data; boundary=bentohost-")
    got = parse(ctype, parts)
    assert [g[0] for g in got] == ["doc", "docs", "docs", "pic", "note", "n", "tags", "maybe", "url"]
    assert got[0][1:] == ("we%22ird.txt", "text/plain", b"alpha\r\n--not a boundary\r\n")
    assert got[2][1:3] == ("file", "application/octet-stream") and got[2][3] == b"raw"
    assert got[3][1:3] == ("image.png", "image/png") and got[3][3][:8] == b"\x89PNG\r\n\x1a\n"
    # other fields hold their JSON (a string too); a URL for a file field goes as text
    assert [g[3] for g in got[4:]] == [b'"007"', b"3", b'["x"]', b"null", b"http://example.com/f.txt"]
