"""Numpy answers of every kind the C writer handles (and some it leaves to Python):
/array {"case": name} returns CASES[name]; tests/test_json_arrays.py compares the bytes
with json.dumps(array.tolist())."""

import numpy as np

import bentohost

_rng = np.random.default_rng(7)
_f32 = (_rng.standard_normal(300) * np.float32(10.0) ** _rng.integers(-40, 38, 300)).astype(np.float32)

CASES = {
    "float32": _f32,
    "float32_special": np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, 3.4028235e38, 0.1, 1 / 3],
                                dtype=np.float32),
    "float64": np.array([0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1 / 3,
                         1e16, 1e22, 123456789012345680.0, -1.5, np.nan, np.inf, -np.inf]),
    "float64_random": _rng.standard_normal((17, 13)) * 10.0 ** _rng.integers(-300, 300, (17, 13)),
    "int8": np.array([-128, -1, 0, 1, 127], dtype=np.int8),
    "int16": np.array([-32768, 32767], dtype=np.int16),
    "int32": np.array([[-2147483648, 2147483647], [0, 7]], dtype=np.int32),
    "int64": np.array([-9223372036854775808, 9223372036854775807, 0], dtype=np.int64),
    "uint8": np.arange(0, 256, 51, dtype=np.uint8),
    "uint16": np.array([0, 65535], dtype=np.uint16),
    "uint32": np.array([4294967295], dtype=np.uint32),
    "uint64": np.array([0, 18446744073709551615], dtype=np.uint64),
    "bool": np.array([[True, False], [False, True]]),
    "scalar": np.array(2.5, dtype=np.float32),
    "empty": np.zeros((0,), dtype=np.float32),
    "empty_rows": np.zeros((2, 0), dtype=np.float64),
    "cube": np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
    "deep": np.ones((1, 1, 1, 1, 1), dtype=np.int64),
    # left to Python: a view with strides, another byte order, float16, objects
    "transposed": (np.arange(12, dtype=np.float32).reshape(3, 4) / 3).T,
    "big_endian": np.arange(5, dtype=">f4") / 3,
    "float16": np.array([0.1, 1.5, 65504.0], dtype=np.float16),
    "objects": np.array([1, "two", 3.0], dtype=object),
}


@bentohost.service(workers=1)
class ArrayAnswers:
    @bentohost.api
    def array(self, case: str) -> np.ndarray:
        return CASES[case]

    @bentohost.api
    def c_writer(self) -> bool:
        """Whether this worker writes numpy answers in C (it should, in any worker)."""
        from bentohost import _io

        return _io._ndarray_json is not None
