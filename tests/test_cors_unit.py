"""bentohost/_cors.py without a server: the http.cors settings as C gets them, and
the origin regex translated to POSIX ERE, checked against glibc's regexec (what
csrc/server/cors.c calls) and Python's re.fullmatch (what Starlette calls)."""

from __future__ import annotations

import ctypes
import ctypes.util
import random
import re

import pytest

from bentohost._cors import CorsError, cors_for_host, posix_ere

REG_EXTENDED, REG_NOSUB = 1, 8


LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


class Ere:
    """One regcomp'd pattern, as csrc/server/cors.c compiles it."""

    def __init__(self, ere: str) -> None:
        self.regex = ctypes.create_string_buffer(256)  # larger than glibc's regex_t
        assert LIBC.regcomp(self.regex, ere.encode(), REG_EXTENDED | REG_NOSUB) == 0, ere

    def fullmatch(self, text: str) -> bool:
        return LIBC.regexec(self.regex, text.encode(), 0, None, 0) == 0

    def close(self) -> None:
        LIBC.regfree(self.regex)


PATTERNS = [
    r"https://.*\.example\.com", r"https?://(www\.)?foo\.(com|org)(:\d+)?", r"(?i)HTTPS://A\.B", r"[^/]+",
    r"https://[\w.-]+\.test", r"a{2,3}b*?c+?", r"(|x)y", r"[]a-]", r"[\^]", r"[\[.]", r"[-^]", r"\s*x\S", r"",
    r"a|", r"[^\W\d]+", r"(?x) a  b # c", r"\Ahttp://x\Z", r"^a$", r"[a-f0-9]{1,4}", r"[\D]", r"(a*)*b", r"[^]]",
    r"x{0}y", r"[*+?{}()|$.]+", r"[^\x00-\x7f]|a", r"a{2,}", r"(?i)[a-c]x", r"https://(\w+\.)*trusted\.example",
]
FIXED = ["https://a.example.com", "https://example.com", "http://www.foo.org:80", "https://A.B", "https://a.b", "",
         "https://x-y.z.test", "aabbcc", "aaac", "y", "xy", "]", "a", "-", "^", "[", ".", "x", "  xq", "http://x",
         "a1b2", "aaab", "b", "*+?{}()|$.", "https://a.b.trusted.example", "Bx", "dx"]
ALPHABET = "ab:/.-_xyzAB09^[]$*?+ {}()|wWfoctemplhs\\"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_translation_matches_what_python_matches(pattern):
    ere = posix_ere(pattern)
    compiled, python = Ere(ere), re.compile(pattern)
    rng = random.Random(pattern)
    samples = FIXED + ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8))) for _ in range(300)]
    try:
        for text in samples:
            assert compiled.fullmatch(text) == (python.fullmatch(text) is not None), (pattern, ere, text)
    finally:
        compiled.close()


@pytest.mark.parametrize("pattern, reason", [
    (r"(?<=a)b", "look-arounds"), (r"(a)\1", "back-references"), (r"\bx", r"\b"), (r"(?i:a)b", "inline flags"),
    (r"a{300}", "repeat counts above 255"), (r"(?>a)", "atomic groups"), (r"a++", "possessive"),
    (r"[", "not a valid regular expression"),
])
def test_what_posix_cannot_say_is_refused(pattern, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        posix_ere(pattern)


def _cors(**cors):
    return cors_for_host({"http": {"cors": cors}}, "S")


def test_settings_for_the_host():
    assert _cors() is None and _cors(enabled=False, access_control_allow_origins="*") is None
    assert _cors(enabled=True, access_control_allow_origins="https://a.example") == {
        "allow_origins": ["https://a.example"], "allow_origin_regex": None, "allow_methods": ["GET"],
        "allow_headers": [], "allow_credentials": False, "expose_headers": [], "max_age": 600}
    got = _cors(enabled=True, access_control_allow_origins=[], access_control_allow_origin_regex=r"https://\w+\.x",
                access_control_allow_methods="*", access_control_allow_headers="X-A",
                access_control_expose_headers="X-B", access_control_max_age=0,
                access_control_allow_credentials=True)
    assert got is not None and got["allow_methods"] == ["*"] and got["allow_headers"] == ["X-A"]
    assert got["expose_headers"] == ["X-B"] and got["max_age"] == 0 and got["allow_credentials"] is True
    assert got["allow_origin_regex"].startswith("^(https://(") and got["allow_origins"] == []


@pytest.mark.parametrize("cors, message", [
    ({"enabled": True}, "access_control_allow_origins must be set"),
    ({"enabled": 1, "access_control_allow_origins": "*"}, "http.cors.enabled: Input should be a valid boolean"),
    ({"enabled": True, "access_control_allow_origins": "a b"}, "is not an origin"),
    ({"enabled": True, "access_control_allow_origins": "*", "access_control_allow_methods": ["GET\r\nX: y"]},
     "is not a header or method name"),
    ({"enabled": True, "access_control_allow_origins": "*", "access_control_max_age": -5}, "must be an integer >= 0"),
    ({"enabled": True, "access_control_allow_origins": "*", "access_control_allow_origin_regex": "(?=x)"},
     "access_control_allow_origin_regex: look-arounds are not supported"),
])
def test_bad_settings(cors, message):
    with pytest.raises(CorsError, match=re.escape(message)) as info:
        _cors(**cors)
    assert str(info.value).startswith("service S: ") and "\n" not in str(info.value)
