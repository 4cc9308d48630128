"""The framing of streams between services (bentohost/_frames.py): frames split
at any byte, text split inside a character, and a stream cut inside a frame."""

from __future__ import annotations

import numpy as np
import pytest

from bentohost._frames import FRAMES_JSON, FRAMES_PICKLE, FrameDecoder, frame_encoder, requested_frames

ITEMS = [{"i": 1, "text": "a\nb"}, "tok ", [1, 2.5, None], "", 0]


@pytest.mark.parametrize("media", [FRAMES_PICKLE, FRAMES_JSON])
def test_items_survive_any_split(media):
    wire = b"".join(frame_encoder(media)(item) for item in ITEMS)
    for step in (1, 3, 7, len(wire)):
        dec = FrameDecoder(media, allow_pickle=True)
        out = []
        for i in range(0, len(wire), step):
            out += dec.feed(wire[i : i + step])
        out += dec.close()
        assert out == ITEMS


def test_pickle_frames_carry_numpy():
    wire = frame_encoder(FRAMES_PICKLE)(np.arange(6, dtype=np.int16).reshape(2, 3))
    (arr,) = FrameDecoder(FRAMES_PICKLE, allow_pickle=True).feed(wire)
    assert arr.dtype == np.int16 and arr.shape == (2, 3) and arr.sum() == 15


@pytest.mark.parametrize("media", [FRAMES_PICKLE, FRAMES_JSON])
def test_a_stream_cut_inside_a_frame_is_an_error(media):
    wire = frame_encoder(media)({"long": "x" * 100})
    dec = FrameDecoder(media, allow_pickle=True)
    assert dec.feed(wire[:-3]) == []
    with pytest.raises(ConnectionError, match="middle of an item"):
        dec.close()


def test_an_absurd_frame_length_is_refused():
    with pytest.raises(ConnectionError, match="too large"):
        FrameDecoder(FRAMES_PICKLE, allow_pickle=True).feed(b"\xff\xff\xff\xff")


def test_unframed_text_keeps_characters_split_across_chunks():
    data = "héllo wörld ✓".encode()
    dec = FrameDecoder("text/event-stream; charset=utf-8")
    out = [t for i in range(len(data)) for t in dec.feed(data[i : i + 1])] + dec.close()
    assert "".join(out) == "héllo wörld ✓"


def test_unframed_binary_goes_as_it_came():
    dec = FrameDecoder("application/octet-stream")
    assert dec.feed(b"\x00\x01") == [b"\x00\x01"] and dec.close() == []


@pytest.mark.parametrize("head,want", [
    (b"POST /x HTTP/1.1\r\nX-Bentohost-Stream: pickle\r\n", FRAMES_PICKLE),
    (b"POST /x HTTP/1.1\r\nx-bentohost-stream:json\r\n", FRAMES_JSON),
    (b"POST /x HTTP/1.1\r\nX-Bentohost-Stream: yaml\r\n", None),
    (b"POST /x HTTP/1.1\r\nX-Other: pickle\r\n", None),
    (None, None),
])
def test_requested_frames(head, want):
    assert requested_frames(head) == want


def test_pickle_frames_are_refused_unless_asked_for():
    with pytest.raises(ConnectionError, match="asked for JSON"):
        FrameDecoder(FRAMES_PICKLE)
