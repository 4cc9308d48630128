"""A numpy answer is written as JSON by C from the array's buffer
(csrc/python/json_array.c): byte for byte json.dumps(array.tolist()), BentoML's answer,
for every dtype and shape it writes, and the same for those it leaves to Python."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import SERVICES

sys.path.insert(0, str(SERVICES))
from array_answers import CASES  # noqa: E402


@pytest.fixture(scope="module")
def array_server(module_server_factory):
    return module_server_factory("array_answers.py:ArrayAnswers")


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_answer_is_json_dumps_of_tolist(array_server, case):
    r = array_server.post("/array", {"case": case})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.content == json.dumps(CASES[case].tolist()).encode(), case


def test_the_worker_writes_numpy_answers_in_c(array_server):
    assert array_server.post("/c_writer", {}).json() is True
