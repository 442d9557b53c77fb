"""DE55 fast path of the issuer: the tag-layout regex cache parses exactly like the core BER-TLV
decoder (rig.iso8583.messages.de55_decode), whether a layout is new, learnt or merely the same
length."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rig.emv.tlv import tag_to_hex
from rig.host import flows_card
from rig.iso8583 import messages as m


def _byte(b: int) -> bytes:
    return bytes([b])


_TAGS = st.one_of(
    st.integers(0x01, 0xFE).filter(lambda b: b & 0x1F != 0x1F and b & 0x20 == 0).map(_byte),
    st.tuples(
        st.integers(0, 7).map(lambda c: 0x1F | (c << 6) if c < 4 else 0x9F),
        st.integers(0x00, 0x7F),
    ).map(bytes),
    st.tuples(st.just(0xDF), st.integers(0x80, 0xFF), st.integers(0x00, 0x7F)).map(bytes),
)


def _tlv(tag: bytes, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        head = bytes([n])
    elif n < 0x100:
        head = b"\x81" + bytes([n])
    else:
        head = b"\x82" + n.to_bytes(2, "big")
    return tag + head + value


def _core_tags(de55: str) -> dict[str, bytes]:
    return {tag_to_hex(t): v for t, v in m.de55_decode(de55).items()}


@settings(max_examples=300, deadline=None)
@given(
    layout=st.lists(st.tuples(_TAGS, st.sampled_from([0, 1, 2, 5, 8, 127, 128, 300])), max_size=8),
    data=st.data(),
)
def test_icc_layout_cache_parses_like_the_core_decoder(layout, data) -> None:
    flows_card._LAYOUTS.clear()
    flows_card._SEEN.clear()
    for _ in range(4):
        values = [data.draw(st.binary(min_size=n, max_size=n)) for _, n in layout]
        de55 = b"".join(_tlv(t, v) for (t, _), v in zip(layout, values, strict=True)).hex()
        de55 = de55.upper() if data.draw(st.booleans()) else de55
        assert flows_card.icc_tags(de55) == _core_tags(de55)
    if layout:
        assert flows_card._LAYOUTS, "a layout met twice is learnt"
        raw = bytearray(bytes.fromhex(de55))
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        other = raw.hex()
        try:
            want = ("ok", _core_tags(other))
        except m.Iso8583Error as exc:
            want = ("error", str(exc))
        try:
            got = ("ok", flows_card.icc_tags(other))
        except m.Iso8583Error as exc:
            got = ("error", str(exc))
        assert got == want, "same length, other bytes: the learnt layout must not misparse"


def test_layouts_of_the_same_length_stay_apart() -> None:
    flows_card._LAYOUTS.clear()
    flows_card._SEEN.clear()
    a = [(b"\x9f\x02", 6), (b"\x95", 5), (b"\x9a", 3)]
    b = [(b"\x9f\x02", 6), (b"\x95", 3), (b"\x9a", 5)]
    c = [(b"\x95", 5), (b"\x9f\x02", 6), (b"\x9a", 3)]
    for i in range(4):
        for layout in (a, b, c):
            de55 = b"".join(_tlv(t, bytes([i + n]) * n) for t, n in layout).hex().upper()
            assert flows_card.icc_tags(de55) == _core_tags(de55)
    assert len(flows_card._LAYOUTS) == 1, "one DE55 length"
    assert len(next(iter(flows_card._LAYOUTS.values()))) == 3, "three layouts learnt for it"
    assert flows_card.icc_tags("9F0206000000000100") == {"9F02": bytes.fromhex("000000000100")}
