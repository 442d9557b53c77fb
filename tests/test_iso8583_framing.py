"""Length-prefix framings: wire bytes, partial reads, keep-alives, limits, fuzzing, asyncio."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.iso8583.framing import (
    FRAMINGS,
    Framing,
    FramingError,
    StreamClosed,
    Tpdu,
    get_framing,
    read_frame,
    read_framed,
)

TPDU = Tpdu(0x0001, 0x0002)


def _frame(f: Framing, payload: bytes) -> bytes:
    return f.frame(payload, TPDU if f.name == "len2-tpdu" else None)


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("len2", "0003414243"),
        ("len2-tpdu", "000860000100024142 43".replace(" ", "")),
        ("ascii4", "30303033414243"),
        ("bcd2", "0003414243"),
        ("len4", "00000003414243"),
    ],
)
def test_wire_format(name, wire):
    assert _frame(FRAMINGS[name], b"ABC").hex() == wire


def test_bcd_length_is_decimal():
    assert FRAMINGS["bcd2"].frame(b"x" * 1234)[:2] == b"\x12\x34"
    assert FRAMINGS["ascii4"].frame(b"x" * 1234)[:4] == b"1234"


@pytest.mark.parametrize("name", list(FRAMINGS))
@given(payloads=st.lists(st.binary(min_size=0, max_size=60), max_size=6), data=st.data())
def test_reader_any_chunking(name, payloads, data):
    f = FRAMINGS[name]
    keepalive = b"\x00\x00" if name == "len2-tpdu" else f.frame(b"")
    stream = b"".join(_frame(f, p) if p else keepalive for p in payloads)
    reader = f.reader()
    got = []
    pos = 0
    while pos < len(stream):
        step = data.draw(st.integers(1, 9))
        got += reader.feed(stream[pos : pos + step])
        pos += step
    assert [fr.payload for fr in got] == [p for p in payloads if p]
    assert reader.keepalives == sum(1 for p in payloads if not p)
    assert reader.pending == 0
    if name == "len2-tpdu":
        assert all(fr.tpdu == TPDU for fr in got)


def test_tpdu_swap_and_errors():
    assert TPDU.swapped() == Tpdu(2, 1)
    assert str(TPDU.swapped()) == "6000020001"
    with pytest.raises(FramingError, match="TPDU id is 61"):
        FRAMINGS["len2-tpdu"].reader().feed(bytes.fromhex("0006610001000241"))
    with pytest.raises(FramingError, match="shorter than the 5-byte TPDU"):
        FRAMINGS["len2-tpdu"].reader().feed(bytes.fromhex("0003600001"))
    with pytest.raises(FramingError, match="needs a TPDU"):
        FRAMINGS["len2-tpdu"].frame(b"x")
    with pytest.raises(FramingError, match="carries no TPDU"):
        FRAMINGS["len2"].frame(b"x", TPDU)


def test_limit_is_named():
    f = get_framing("len2", max_len=100)
    with pytest.raises(FramingError, match="frame length 101 exceeds the limit 100") as e:
        f.reader().feed(b"\x00\x65")
    assert (e.value.length, e.value.limit) == (101, 100)
    with pytest.raises(FramingError, match="exceeds the limit"):
        f.frame(b"x" * 101)
    with pytest.raises(FramingError, match="exceeds the limit 9999"):
        get_framing("ascii4", max_len=20000).frame(b"x" * 10000)


def test_reader_stays_failed_after_error():
    reader = FRAMINGS["ascii4"].reader()
    with pytest.raises(FramingError, match="not 4 ASCII digits"):
        reader.feed(b"00x1")
    with pytest.raises(FramingError):
        reader.feed(b"0001A")


def test_bad_bcd_length():
    with pytest.raises(FramingError, match="not BCD"):
        FRAMINGS["bcd2"].reader().feed(b"\x0a\x00")


def test_get_framing_lists_names():
    with pytest.raises(FramingError, match="valid framings: len2, len2-tpdu, ascii4, bcd2, len4"):
        get_framing("len3")


@pytest.mark.parametrize("name", list(FRAMINGS))
@given(chunks=st.lists(st.binary(max_size=12), max_size=12))
def test_reader_fuzz(name, chunks):
    reader = get_framing(name, max_len=64).reader()
    try:
        for chunk in chunks:
            for fr in reader.feed(chunk):
                assert 0 < len(fr.payload) <= 64
    except FramingError:
        pass


def _run(stream: bytes, name: str, n: int):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(stream)
        reader.feed_eof()
        out = [await read_framed(reader, FRAMINGS[name]) for _ in range(n)]
        return out, reader

    return asyncio.run(go())


def test_async_read_frame_skips_keepalives_and_reports_eof():
    f = FRAMINGS["len2-tpdu"]
    stream = b"\x00\x00" + f.frame(b"ONE", TPDU) + f.frame(b"TWO", TPDU)
    frames, _ = _run(stream, "len2-tpdu", 2)
    assert [fr.payload for fr in frames] == [b"ONE", b"TWO"]
    assert frames[0].tpdu == TPDU
    with pytest.raises(StreamClosed) as e:
        _run(stream, "len2-tpdu", 3)
    assert e.value.partial is False
    with pytest.raises(StreamClosed, match="after 2 of 8 frame bytes") as e:
        _run(stream[:6], "len2-tpdu", 2)
    assert e.value.partial is True

    async def payload_only():
        reader = asyncio.StreamReader()
        reader.feed_data(FRAMINGS["len4"].frame(b"abc"))
        return await read_frame(reader, FRAMINGS["len4"])

    assert asyncio.run(payload_only()) == b"abc"
