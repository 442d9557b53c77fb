"""ESC/POS decoder: styles, symbols, images, cuts, real-time requests, robustness."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from drivers.escpos import (
    EscPosBuilder,
    EscPosDecoder,
    EscPosError,
    Receipt,
    ReceiptDone,
    StatusRequest,
    code128_text,
    decode_stream,
)

ESC, GS = b"\x1b", b"\x1d"


def one(data: bytes) -> Receipt:
    receipts = decode_stream(data)
    assert len(receipts) == 1, receipts
    return receipts[0]


def test_text_styles_and_alignment() -> None:
    data = (
        ESC + b"@" + ESC + b"a\x01" + ESC + b"E\x01" + b"TOTAL\n"
        + ESC + b"E\x00" + ESC + b"a\x02" + ESC + b"-\x01" + b"under\n"
        + ESC + b"a0" + ESC + b"-0" + GS + b"!\x11" + b"big\n"
        + GS + b"!\x00" + ESC + b"!\x38" + b"escbang\n"
        + ESC + b"!\x00" + b"plain " + ESC + b"E\x01" + b"mixed\n"
    )  # fmt: skip
    r = one(data)
    assert [ln.text for ln in r.lines] == ["TOTAL", "under", "big", "escbang", "plain mixed"]
    total, under, big, escbang, mixed = r.lines
    assert (total.align, total.bold, total.underline) == ("center", True, False)
    assert (under.align, under.bold, under.underline) == ("right", False, True)
    assert (big.align, big.width, big.height, big.underline) == ("left", 2, 2, False)
    assert (escbang.bold, escbang.width, escbang.height) == (True, 2, 2)
    assert not mixed.bold
    assert [(s.text, s.style.bold) for s in mixed.spans] == [("plain ", False), ("mixed", True)]
    assert r.feed_lines == 5


def test_init_resets_modes_and_code_page() -> None:
    data = ESC + b"E\x01" + ESC + b"t\x10" + b"\x80\n" + ESC + b"@" + b"\x80\n"
    r = one(data)
    assert r.lines[0].text == "€" and r.lines[0].bold
    assert r.lines[1].text == "Ç" and not r.lines[1].bold
    assert r.code_page == "cp437"


def test_feed_lines_esc_d() -> None:
    r = one(b"A" + ESC + b"d\x03" + b"B\n")
    assert [ln.text for ln in r.lines] == ["A", "", "", "B"]
    assert r.feed_lines == 4


def test_qr_code_functions() -> None:
    payload = "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
    data = EscPosBuilder().text("Scan to pay").qr(payload, module_size=6, level="Q").build()
    r = one(data)
    (qr,) = r.qr_codes
    assert (qr.payload, qr.model, qr.module_size, qr.error_level) == (payload, "2", 6, "Q")
    assert qr.line_index == 1


def test_qr_model_1_and_defaults() -> None:
    store = GS + b"(k\x06\x001P0abc"
    r = one(GS + b"(k\x04\x00" + b"1A1\x00" + store + GS + b"(k\x03\x001Q0")
    assert (r.qr_codes[0].model, r.qr_codes[0].module_size, r.qr_codes[0].error_level) == (
        "1",
        3,
        "L",
    )
    assert r.qr_codes[0].payload == "abc"


def test_barcodes_code128_ean13_both_forms() -> None:
    data = (
        GS + b"H\x02" + GS + b"h\x50"
        + GS + b"k\x49\x0a{BAB{C\x0c\x22{{"
        + GS + b"k\x02" + b"400638133393\x00"
        + GS + b"k\x43\x0d" + b"4006381333931"
    )  # fmt: skip
    r = one(data)
    c128, ean_a, ean_b = r.barcodes
    assert (c128.symbology, c128.text, c128.hri_position, c128.height) == (
        "CODE128",
        "AB1234{",
        2,
        0x50,
    )
    assert (ean_a.symbology, ean_a.data) == ("EAN13", b"400638133393")
    assert (ean_b.symbology, ean_b.text) == ("EAN13", "4006381333931")


def test_code128_fnc1() -> None:
    assert code128_text(b"{A{1ABC") == "<FNC1>ABC"


def test_raster_image_to_png() -> None:
    width_bytes, height = 3, 5
    rows = bytearray(width_bytes * height)
    rows[0] = 0x80  # (0, 0) black
    rows[2 * width_bytes + 1] = 0x01  # (15, 2) black
    rows[4 * width_bytes + 2] = 0xFF  # (16..23, 4) black
    r = one(EscPosBuilder().raster(width_bytes, bytes(rows)).cut().build())
    (img,) = r.images
    assert (img.kind, img.width, img.height) == ("GS v 0", 24, 5)
    pil = Image.open(io.BytesIO(img.png()))
    assert pil.format == "PNG" and pil.size == (24, 5)
    px = pil.convert("L").load()
    black = {(x, y) for y in range(5) for x in range(24) if px[x, y] == 0}
    assert black == {(0, 0), (15, 2)} | {(x, 4) for x in range(16, 24)}


def test_esc_star_bit_image_columns() -> None:
    # 24-dot double density, 2 columns: column 0 top dot, column 1 bottom dot.
    r = one(ESC + b"*\x21\x02\x00" + b"\x80\x00\x00" + b"\x00\x00\x01")
    (img,) = r.images
    assert (img.width, img.height) == (2, 24)
    black = {(x, y) for y in range(24) for x in range(2) if img.pixel(x, y)}
    assert black == {(0, 0), (1, 23)}
    assert Image.open(io.BytesIO(img.png())).size == (2, 24)


def test_cut_splits_receipts() -> None:
    data = (
        b"first\n" + GS + b"V\x00" + b"second\n" + GS + b"V\x42\x05"
        + b"third\n" + ESC + b"m"
    )  # fmt: skip
    receipts = decode_stream(data)
    assert [r.text() for r in receipts] == ["first", "second", "third"]
    assert [(c.kind, c.feed) for r in receipts for c in r.cuts] == [
        ("full", 0),
        ("partial", 5),
        ("partial", 0),
    ]
    assert receipts[1].start_offset == receipts[0].end_offset == 9


def test_dle_eot_events_with_offsets_and_split_feeding() -> None:
    data = b"ab" + b"\x10\x04\x01" + b"cd\n" + b"\x10\x04\x04" + GS + b"V0"
    decoder = EscPosDecoder()
    events = []
    for byte in data:
        events += decoder.feed(bytes([byte]))
    requests = [e for e in events if isinstance(e, StatusRequest)]
    assert requests == [StatusRequest(1, 2), StatusRequest(4, 8)]
    (done,) = [e for e in events if isinstance(e, ReceiptDone)]
    assert done.receipt.text() == "abcd"


def test_unknown_commands_skipped_and_noted() -> None:
    data = b"A" + ESC + b"\x01" + b"B" + GS + b"\x02" + b"C" + GS + b"(Z\x03\x00xyz" + b"D\n"
    r = one(data)
    assert r.text() == "ABCD"
    offsets = [n.offset for n in r.notes]
    assert offsets == [1, 4, 7]
    assert "ESC 0x01" in r.notes[0].message


def test_impossible_gs_paren_k_length_raises_with_offset_then_continues() -> None:
    decoder = EscPosDecoder()
    with pytest.raises(EscPosError) as info:
        decoder.feed(b"xy" + GS + b"(k\x01\x001" + b"after\n")
    assert info.value.offset == 2
    assert "GS ( k length 1" in str(info.value)
    decoder.feed(b"")
    receipt = decoder.flush()
    assert receipt is not None and receipt.text().endswith("after")


def test_raster_too_large_raises() -> None:
    with pytest.raises(EscPosError) as info:
        EscPosDecoder().feed(GS + b"v0\x00\xff\xff\x01\x00")
    assert info.value.offset == 0


def test_round_trip_of_built_stream() -> None:
    builder = (
        EscPosBuilder()
        .text("ACME STORE", bold=True, align="center", width=2, height=2)
        .text("Amount 12.34", underline=1, align="right")
        .feed(2)
        .qr("hello", module_size=5, level="H")
        .barcode("CODE128", b"{BREF123")
        .status_request(1)
        .cut(partial=True)
        .text("copy 2")
        .cut()
    )
    decoder = EscPosDecoder()
    events = decoder.feed(builder.build())
    assert [type(e).__name__ for e in events] == ["StatusRequest", "ReceiptDone", "ReceiptDone"]
    first = events[1].receipt
    assert first.lines[0].to_dict() == {
        "text": "ACME STORE",
        "align": "center",
        "bold": True,
        "underline": False,
        "width": 2,
        "height": 2,
    }
    assert (first.lines[1].align, first.lines[1].underline) == ("right", True)
    assert first.qr_codes[0].payload == "hello" and first.qr_codes[0].error_level == "H"
    assert first.barcodes[0].text == "REF123"
    assert first.cuts[0].kind == "partial"
    assert events[2].receipt.text() == "copy 2"
    assert decoder.flush() is None
    assert first.to_dict()["qr_codes"][0]["payload"] == "hello"


@given(st.binary(max_size=400), st.integers(min_value=1, max_value=64))
def test_fuzz_arbitrary_bytes(data: bytes, chunk: int) -> None:
    decoder = EscPosDecoder()
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        while True:
            try:
                decoder.feed(piece)
                break
            except EscPosError as exc:
                assert 0 <= exc.offset < len(data)
                piece = b""
    decoder.flush()
    assert decoder.offset == len(data)


command_prefix = st.sampled_from(
    [b"\x1b", b"\x1d", b"\x1c", b"\x10", b"\x1d(k", b"\x1dk", b"\x1dv0", b"\x1b*", b"\x0a"]
)


@given(st.lists(st.tuples(command_prefix, st.binary(max_size=12)), max_size=30))
def test_fuzz_command_shaped_input(parts: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(a + b for a, b in parts)
    decoder = EscPosDecoder()
    piece = data
    while True:
        try:
            decoder.feed(piece)
            break
        except EscPosError:
            piece = b""
    decoder.flush()
    assert decoder.offset == len(data)


def _decode_all(data: bytes, chunk: int) -> list[object]:
    decoder, out = EscPosDecoder(), []
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        while True:
            try:
                events = decoder.feed(piece)
                break
            except EscPosError as exc:
                out += [*exc.events, ("error", exc.offset)]
                piece = b""
        out += events
    tail = decoder.flush()
    out.append(tail.to_dict() if tail is not None else None)
    return [e.receipt.to_dict() if isinstance(e, ReceiptDone) else e for e in out]


@given(
    st.lists(
        st.one_of(command_prefix, st.binary(max_size=8), st.sampled_from([b"\x1dV0", b"\n"])),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=16),
)
def test_fuzz_chunked_decoding_equals_whole(parts: list[bytes], chunk: int) -> None:
    data = b"".join(parts)
    assert _decode_all(data, chunk) == _decode_all(data, max(len(data), 1))
