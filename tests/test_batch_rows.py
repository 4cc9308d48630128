"""Batch inputs decoded in C (csrc/traffic/rows.c, bentohost/_rows.py): numeric JSON
rows, application/octet-stream and .npy members written into one array on the I/O
thread. The numbers must be exactly what Python's json and numpy make of them, and
whatever C declines must reach Python and be answered exactly as before."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-I%s" % CSRC]
SOURCES = [CSRC / "traffic/rows.c", CSRC / "traffic/json_items.c", CSRC / "common/decimal.c"]

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not found")


def build(out: Path, extra: list[str]) -> Path:
    cmd = ["gcc", *CFLAGS, *extra, str(ROOT / "tests/c/test_rows.c"), *map(str, SOURCES), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def rows_bin(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("rows") / "test_rows", ["-O2"])


@pytest.mark.parametrize("flavour", ["O2", "asan"])
def test_c_checks(tmp_path, flavour):
    extra = ["-O2"] if flavour == "O2" else ["-O1", "-g", "-fsanitize=address,undefined",
                                               "-fno-sanitize-recover=undefined"]
    exe = build(tmp_path / f"test_rows_{flavour}", extra)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                       env={"ASAN_OPTIONS": "detect_leaks=1", "PATH": "/usr/bin:/bin"})
    if "LeakSanitizer does not work under ptrace" in r.stderr:
        pytest.skip("LeakSanitizer unavailable here")
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
    assert "runtime error" not in r.stderr, r.stderr


# JSON numbers C must read, each exactly as json.loads then np.asarray(dtype) does
DECODED = [
    "0", "-0", "1", "-1", "0.5", "-0.0", "3.141592653589793", "1e5", "1E5", "1e+5", "1e-5", "-2.5E-3",
    "123456789012345678", "0.1", "0.30000000000000004", "1.7976931348623157e308", "1e308", "1e309",
    "-1e400", "1e-400", "4.9e-324", "2.2250738585072014e-308", "3.4028235e38", "3.5e38", "1.4e-45",
    "1e-46", "16777217", "9007199254740993", "0.000001", "100000000000000000000e-5",
]
# tokens C leaves to Python (json reads some, rejects others: Python's answer either way)
DECLINED = ["NaN", "Infinity", "-Infinity", "01", "1.", ".5", "+1", "0x10", "1e", "-", "1e+", "--1", "1.5.5",
            "12345678901234567890123"]
INTEGER_DECODED = ["0", "-0", "7", "-7", "127", "255", "2147483647", "-2147483648", "922337203685477580"]
INTEGER_DECLINED = ["1.0", "1e3", "NaN", "-0.0"]


def c_numbers(exe: Path, dtype: str, tokens: list[str]) -> list[str]:
    out = subprocess.run([str(exe), "number", dtype, *tokens], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def python_bytes(token: str, dtype: str) -> str | None:
    try:
        with np.errstate(over="ignore"):
            return np.asarray([json.loads(token)], dtype=dtype).tobytes().hex()
    except (ValueError, OverflowError, TypeError):
        return None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_numbers_match_python(rows_bin, dtype):
    for token, got in zip(DECODED, c_numbers(rows_bin, dtype, DECODED)):
        assert got == python_bytes(token, dtype), (token, got)
    assert c_numbers(rows_bin, dtype, DECLINED) == ["ERR"] * len(DECLINED)


def random_tokens(n: int, seed: int) -> list[str]:
    """JSON numbers of 1 to 20 significant digits, the point anywhere, exponents either
    side of the range a double multiplies exactly (|e| <= 22), leading and trailing zeros."""
    rng = np.random.default_rng(seed)
    tokens = []
    for _ in range(n):
        digits = "".join(map(str, rng.integers(0, 10, int(rng.integers(1, 21)))))
        point = int(rng.integers(0, len(digits) + 1))
        whole, frac = digits[:point].lstrip("0") or "0", digits[point:]
        token = ("-" if rng.random() < 0.3 else "") + whole + ("." + frac if frac else "")
        if rng.random() < 0.5:
            token += rng.choice(["e", "E"]) + rng.choice(["", "+", "-"]) + str(int(rng.integers(0, 40)))
        tokens.append(token)
    return tokens


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_numbers_match_python(rows_bin, dtype):
    tokens = random_tokens(20000, 12)
    decoded = c_numbers(rows_bin, dtype, tokens)
    # integers past 18 digits are left to Python's exact int on purpose
    long_int = [t.lstrip("-").isdigit() and len(t.lstrip("-")) > 18 for t in tokens]
    mismatched = [(t, got) for t, got, li in zip(tokens, decoded, long_int)
                  if got != python_bytes(t, dtype) and not (li and got == "ERR")]
    assert not mismatched, mismatched[:10]
    assert decoded.count("ERR") == sum(long_int)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64", "uint64"])
def test_integer_numbers_match_python(rows_bin, dtype):
    for token, got in zip(INTEGER_DECODED, c_numbers(rows_bin, dtype, INTEGER_DECODED)):
        expected = python_bytes(token, dtype)
        assert got == (expected if expected is not None else "ERR"), (token, dtype, got)
    assert c_numbers(rows_bin, dtype, INTEGER_DECLINED) == ["ERR"] * len(INTEGER_DECLINED)


# ----------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def rows_server(module_server_factory):
    return module_server_factory("batch_rows.py:Rows")


def seen(srv) -> dict:
    return srv.post("/seen", json_body={}).json()


def post_many(srv, path: str, bodies: list[tuple[bytes, str]]) -> list:
    def one(item):
        body, ctype = item
        return srv.post(path, data=body, headers={"Content-Type": ctype})

    with ThreadPoolExecutor(len(bodies)) as ex:
        return list(ex.map(one, bodies))


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_json_rows_reach_python_as_one_array(rows_server):
    before = seen(rows_server)
    rng = np.random.default_rng(3)
    rows = [rng.standard_normal((1 + i % 3, 5)).round(6) for i in range(24)]
    bodies = [(json.dumps({"x": r.tolist()}).encode(), "application/json") for r in rows]
    for r, resp in zip(rows, post_many(rows_server, "/double", bodies)):
        assert resp.status_code == 200, resp.text
        assert np.array_equal(np.asarray(resp.json(), dtype=np.float32), r.astype(np.float32) * 2)
    after = seen(rows_server)
    assert after["c"] > before["c"] and after["python"] == before["python"], (before, after)


def test_binary_rows_raw_and_npy(rows_server):
    before = seen(rows_server)
    rng = np.random.default_rng(4)
    rows = [rng.standard_normal((1 + i % 2, 3)) for i in range(16)]
    bodies = [(r.tobytes(), "application/octet-stream") if i % 2 else (npy(r), "application/x-npy")
              for i, r in enumerate(rows)]
    for r, resp in zip(rows, post_many(rows_server, "/triples", bodies)):
        assert resp.status_code == 200, resp.text
        assert np.allclose(resp.json(), r.sum(axis=1))
    assert seen(rows_server)["c"] > before["c"]


def test_integer_rows(rows_server):
    resp = post_many(rows_server, "/counts", [(b'{"x": [1, 2, 3]}', "application/json")] * 4)
    assert all(r.status_code == 200 and r.json() == [2, 3, 4] for r in resp)


@pytest.mark.parametrize(
    "body, status",
    [
        (b'{"x": [[1, NaN]]}', 200),       # Python's json reads NaN: as before
        (b'{"x": [[1, 2], [3]]}', 400),    # ragged
        (b'{"x": [["a"]]}', 400),          # not numbers
        (b'{"x": [[1, 2]], "y": 3}', 200), # another key: Python decides (pydantic ignores it)
        (b'{"y": [[1]]}', 400),            # the field is missing
    ],
)
def test_what_c_declines_is_answered_as_before(rows_server, body, status):
    before = seen(rows_server)
    r = rows_server.post("/double", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    if status == 200:
        assert seen(rows_server)["python"] > before["python"]


def test_a_bad_member_does_not_fail_its_batch_mates(rows_server):
    good = (b'{"x": [[1, 2]]}', "application/json")
    bad = (b'{"x": [[1, "two"]]}', "application/json")
    answers = post_many(rows_server, "/double", [good, bad] * 6)
    assert [a.status_code for a in answers] == [200, 400] * 6
    assert all(a.json() == [[2.0, 4.0]] for a in answers[::2])


def test_float32_values_are_numpys(rows_server):
    tokens = ["0.1", "1e-46", "3.5e38", "-0.0", "16777217"]
    body = ('{"x": [' + ", ".join(tokens) + "]}").encode()
    r = rows_server.post("/double", data=body, headers={"Content-Type": "application/json"})
    with np.errstate(over="ignore"):
        want = np.asarray([json.loads(t) for t in tokens], dtype=np.float32) * 2
    got = r.json()
    assert got[:3] == [float(v) for v in want[:3]] and got[4] == float(want[4])
    assert struct.pack("<f", got[3]) == struct.pack("<f", -0.0)


# ----------------------------------------------------------------- inputs of plain APIs


@pytest.fixture(scope="module")
def input_servers(module_server_factory):
    """The same service with C reading JSON arrays, and with Python's json (as before)."""
    return (module_server_factory("array_inputs.py:ArrayInputs"),
            module_server_factory("array_inputs.py:ArrayInputs", env={"BENTOHOST_PYTHON_ROWS": "1"}))


INPUT_BODIES = [
    ("/f32", '{"x": [0.1, -2.5, 1e-46, 3.5e38, 16777217, -0.0]}'),
    ("/f32", '{"x": [[1, 2], [3, 4]]}'),
    ("/f32", ' { "x" :\n[1.5 ,2] } '),
    ("/f32", '{"x": [1, 2], "y": 3}'),  # another key: Python's answer
    ("/f32", '{"x": [[1, 2], [3]]}'),  # ragged
    ("/f32", '{"x": []}'),
    ("/f32", '{"x": [NaN, 1]}'),
    ("/f32", '{"x": [1, "2"]}'),
    ("/f32", '{"x": 5}'),
    ("/f32", '{"x": [1, 2'),
    ("/f32", '{}'),
    ("/f32", '{"x": [12345678901234567890123, 1]}'),
    ("/f64_pairs", '{"x": [1, 2, 3, 4]}'),  # reshaped to the declared shape
    ("/f64_pairs", '{"x": [[0.30000000000000004, 1e308], [4.9e-324, -1e-400]]}'),
    ("/f64_pairs", '{"x": [1, 2, 3]}'),  # cannot be reshaped: 400
    ("/i16", '{"x": [-32768, 32767, 0, -0]}'),
    ("/i16", '{"x": [32768]}'),  # out of range
    ("/i16", '{"x": [1.5]}'),  # a fraction for an integer dtype
    ("/root_u8", '[0, 255, 7]'),
    ("/root_u8", '[256]'),
    ("/root_u8", '[-1]'),
]


@pytest.mark.parametrize("path,body", INPUT_BODIES)
def test_json_array_inputs_are_answered_as_pythons_json_answers_them(input_servers, path, body):
    c_server, py_server = input_servers
    headers = {"Content-Type": "application/json"}
    got = c_server.post(path, data=body.encode(), headers=headers)
    want = py_server.post(path, data=body.encode(), headers=headers)
    assert got.status_code == want.status_code, (body, got.text, want.text)
    if want.status_code != 200:
        assert got.json() == want.json(), body
        return
    g, w = got.json(), want.json()
    assert w["from_c"] is False
    assert {k: v for k, v in g.items() if k != "from_c"} == {k: v for k, v in w.items() if k != "from_c"}, body


def test_json_array_inputs_are_read_by_c(input_servers):
    c_server, _ = input_servers
    rng = np.random.default_rng(3)
    values = rng.standard_normal(100_000).astype(np.float32)
    body = json.dumps({"x": [float(v) for v in values]}).encode()  # big enough to release the GIL
    r = c_server.post("/f32", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["from_c"] is True and answer["writable"] is True
    assert bytes.fromhex(answer["hex"]) == values.tobytes()
    tokens = random_tokens(3000, 5)
    r = c_server.post("/f32", data=('{"x": [' + ", ".join(tokens) + "]}").encode(),
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    with np.errstate(over="ignore"):
        want = np.asarray([json.loads(t) for t in tokens], dtype=np.float32)
    assert bytes.fromhex(r.json()["hex"]) == want.tobytes()
