"""The ECR framing and message codecs, pure: worked examples, error offsets, fuzzing."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ecr import EcrFrameError, EcrMessageError
from drivers.ecr import messages as m
from drivers.ecr.framing import (
    ACK,
    ETX,
    NAK,
    STX,
    EventKind,
    FrameDecoder,
    encode_frame,
    lrc,
)

PING_FRAME = bytes.fromhex(
    "02 7B 22 63 6D 64 22 3A 22 70 69 6E 67 22 2C 22 73 65 71 22 3A 31 7D 03 05"
)
"""The worked example of docs/ecr-protocol.md: {"cmd":"ping","seq":1}, LRC 0x05."""


def test_lrc_by_hand() -> None:
    # payload "A": LRC = 0x41 XOR 0x03 (ETX) = 0x42
    assert encode_frame(b"A") == bytes([STX, 0x41, ETX, 0x42])
    assert lrc(b"") == 0


def test_worked_example_of_the_spec() -> None:
    payload = m.encode(m.request("ping", seq=1))
    assert payload == b'{"cmd":"ping","seq":1}'
    assert encode_frame(payload) == PING_FRAME
    events = FrameDecoder().feed(PING_FRAME)
    assert [(e.kind, e.payload) for e in events] == [(EventKind.FRAME, payload)]


@pytest.mark.parametrize("bad", [STX, ETX, ACK, NAK, 0x0A, 0x1C, 0x00])
def test_control_byte_in_payload_refused_with_offset(bad: int) -> None:
    with pytest.raises(EcrFrameError) as info:
        encode_frame(b"abc" + bytes([bad]) + b"def")
    assert info.value.offset == 3
    assert f"0x{bad:02X}" in str(info.value)


def test_oversize_payload_refused() -> None:
    with pytest.raises(EcrFrameError, match="maximum 8"):
        encode_frame(b"x" * 9, max_payload=8)
    assert encode_frame(b"x" * 8, max_payload=8)[1:9] == b"x" * 8


def test_byte_by_byte_feed_gives_one_frame() -> None:
    dec = FrameDecoder()
    events = [e for b in PING_FRAME for e in dec.feed(bytes([b]))]
    assert [e.kind for e in events] == [EventKind.FRAME]
    assert events[0].offset == 0 and events[0].size == len(PING_FRAME)


def test_bad_lrc_reported_with_both_values() -> None:
    events = FrameDecoder().feed(PING_FRAME[:-1] + b"\x06")
    assert events[0].kind == EventKind.BAD_LRC
    assert "0x06 received, 0x05 computed" in events[0].reason


def test_garbage_then_ack_nak_then_frame() -> None:
    events = FrameDecoder().feed(b"zz\x06\x15noise" + encode_frame(b"hi"))
    kinds = [(e.kind, e.offset, e.size) for e in events]
    assert kinds == [
        (EventKind.GARBAGE, 0, 2),
        (EventKind.ACK, 2, 1),
        (EventKind.NAK, 3, 1),
        (EventKind.GARBAGE, 4, 5),
        (EventKind.FRAME, 9, 5),
    ]


def test_oversize_frame_consumed_whole_and_reported_once() -> None:
    dec = FrameDecoder(max_payload=4)
    events = dec.feed(bytes([STX]) + b"x" * 10 + bytes([ETX, 0]) + encode_frame(b"ok"))
    assert [e.kind for e in events] == [EventKind.OVERSIZE, EventKind.FRAME]
    assert events[0].size == 13 and "10 bytes" in events[0].reason
    assert events[1].payload == b"ok"


def test_control_byte_inside_received_frame() -> None:
    body = b"a\x0cb" + bytes([ETX])
    events = FrameDecoder().feed(bytes([STX]) + body + bytes([lrc(body)]))
    assert events[0].kind == EventKind.BAD_BYTE and "0x0C" in events[0].reason


def test_stx_inside_frame_restarts() -> None:
    events = FrameDecoder().feed(b"\x02half" + encode_frame(b"whole"))
    assert [e.kind for e in events] == [EventKind.TRUNCATED, EventKind.FRAME]
    assert events[1].payload == b"whole"


def test_inter_char_timeout_truncates() -> None:
    dec = FrameDecoder()
    assert dec.feed(PING_FRAME[:10]) == []
    assert dec.in_frame
    (event,) = dec.timeout()
    assert event.kind == EventKind.TRUNCATED and event.size == 10
    assert not dec.in_frame and dec.timeout() == []
    assert [e.kind for e in dec.feed(PING_FRAME)] == [EventKind.FRAME]


@given(st.lists(st.binary(max_size=64), max_size=20), st.integers(1, 64))
def test_fuzz_decoder_accounts_for_every_byte(chunks: list[bytes], max_payload: int) -> None:
    dec = FrameDecoder(max_payload=max_payload)
    events = [e for c in chunks for e in dec.feed(c)] + dec.timeout()
    assert sum(e.size for e in events) == sum(map(len, chunks))
    assert dec.pending == 0
    offsets = [e.offset for e in events]
    assert offsets == sorted(offsets)
    for e in events:
        if e.kind == EventKind.FRAME:
            assert len(e.payload) <= max_payload and lrc(e.payload + bytes([ETX])) == e.raw[-1]


_TEXT = st.binary(max_size=80).map(lambda b: bytes(x | 0x20 for x in b))
_NOISE = st.binary(max_size=8).map(lambda b: bytes(x for x in b if x not in (STX, ACK, NAK)))


@given(st.lists(st.tuples(_NOISE, _TEXT), max_size=8), st.integers(1, 17))
def test_round_trip_through_noise_and_any_chunking(items: list, step: int) -> None:
    stream = b"".join(noise + encode_frame(payload) for noise, payload in items)
    dec = FrameDecoder()
    events = [e for i in range(0, len(stream), step) for e in dec.feed(stream[i : i + step])]
    frames = [e.payload for e in events if e.kind == EventKind.FRAME]
    assert frames == [payload for _, payload in items]
    assert all(e.kind in (EventKind.FRAME, EventKind.GARBAGE) for e in events)


# ---- message codec -------------------------------------------------------------------------

EXAMPLES = [
    m.request("ping"),
    m.request("status"),
    m.request("sale", amount=1234, currency="978", reference="R-1", tip=100),
    m.request("refund", amount=500, currency="978", reference="R-2", original_reference="R-1"),
    m.request("void", reference="R-3", original_reference="R-1"),
    m.request("preauth", amount=9900, currency="840", reference="P-1"),
    m.request("balance"),
    m.request("topup", amount=2000, currency="978", reference="T-1"),
    m.request("settlement"),
    m.request("reprint", receipt="last"),
    m.request("param_download", params={"merchant_id": "M1", "tip": 1}, source="inline"),
    m.request("reboot"),
    m.request("key_inject", keys=["1", "2", "ENTER"]),
    m.request("display_read"),
    m.request("display_shot"),
    m.request("simctl", mode="garble", count=2),
    m.response({"cmd": "sale", "seq": 7}, m.Result.OK, masked_pan="476173******0010", stan=1),
    m.response({"cmd": "display_shot", "seq": 8}, "00", png="iVBORw0=", width=1, height=1),
    m.response({}, m.Result.FORMAT_ERROR, text="bad"),
    *m.firmware_requests(b"\x00\x01" * 700, "2.0.1", chunk_size=512),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda x: x.get("cmd") or x.get("rsp"))
def test_message_round_trip(message: dict) -> None:
    payload = m.encode(message)
    assert all(0x20 <= b <= 0x7E for b in payload)
    assert m.decode(payload) == message


def test_crc32_published_check_value() -> None:
    # CRC-32/ISO-HDLC check value over "123456789" (Greg Cook, Catalogue of parametrised CRC
    # algorithms; also ITU-T V.42 / IEEE 802.3): 0xCBF43926.
    assert m.crc32_hex(b"123456789") == "CBF43926"


def test_firmware_requests_carry_checked_chunks() -> None:
    image = bytes(range(256)) * 5
    reqs = m.firmware_requests(image, "3.1", chunk_size=512)
    assert [r["cmd"] for r in reqs] == ["fw_begin", "fw_chunk", "fw_chunk", "fw_chunk", "fw_end"]
    chunks = [base64.b64decode(r["data"]) for r in reqs[1:-1]]
    assert b"".join(chunks) == image and [len(c) for c in chunks] == [512, 512, 256]
    assert reqs[0]["crc32"] == m.crc32_hex(image) and reqs[2]["crc32"] == m.crc32_hex(chunks[1])


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"cmd": "sale", "seq": 1, "amount": 1, "currency": "978"}, "reference"),
        ({"cmd": "sale", "seq": 1, "amount": -1, "currency": "978", "reference": "x"}, "amount"),
        ({"cmd": "sale", "seq": 1, "amount": True, "currency": "978", "reference": "x"}, "amount"),
        ({"cmd": "ping", "seq": 1, "pan": "4761739001010010"}, "pan"),
        ({"cmd": "ping", "seq": 1, "PIN": "1234"}, "PIN"),
        ({"cmd": "ping", "seq": 1, "track2": "x"}, "track2"),
        ({"cmd": "ping", "seq": 1, "amount": 1}, "amount"),
        ({"cmd": "nope", "seq": 1}, "cmd"),
        ({"cmd": "ping", "seq": 10000}, "seq"),
        ({"cmd": "ping", "rsp": "ping", "seq": 1}, ""),
        ({"rsp": "ping", "seq": 1, "result": "99"}, "result"),
        ({"rsp": "sale", "seq": 1, "result": "00", "masked_pan": "4761739001010010"}, "masked_pan"),
        ({"cmd": "key_inject", "seq": 1, "keys": ["1", "PANIC"]}, "keys"),
        ({"cmd": "fw_chunk", "seq": 1, "index": 0, "length": 1, "crc32": "x", "data": ""}, "crc32"),
        (
            {
                "cmd": "fw_chunk",
                "seq": 1,
                "index": 0,
                "length": 1,
                "crc32": "00000000",
                "data": "!!",
            },
            "data",
        ),
    ],
)
def test_bad_messages_name_the_field(message: dict, field: str) -> None:
    with pytest.raises(EcrMessageError) as info:
        m.encode(message)
    assert info.value.field == field


def test_clear_pan_in_any_text_field_refused() -> None:
    # 4761739001010010: Visa test card PAN (test data, not a real account).
    with pytest.raises(EcrMessageError, match="PAN in clear") as info:
        m.request("sale", amount=1, currency="978", reference="4761739001010010")
    assert info.value.field == "reference"
    with pytest.raises(EcrMessageError, match="PAN in clear"):
        m.request("param_download", params={"note": "card 4761739001010010"})
    assert m.mask_clear_pans("QR 4761739001010010 x") == "QR 476173******0010 x"
    assert m.mask_clear_pans("0002010102113800") == "0002010102113800"


@pytest.mark.parametrize(
    ("payload", "offset"),
    [
        (b'{"cmd":"ping",', 14),
        (b'{"cmd":"ping","seq":1,"seq":2}', None),
        (b"\xff", 0),
        (b"[" * 3000, None),
        (b"NaN", None),
    ],
)
def test_bad_payloads_raise_message_error(payload: bytes, offset: int | None) -> None:
    with pytest.raises(EcrMessageError) as info:
        m.decode(payload)
    assert info.value.offset == offset


@given(st.binary(max_size=200))
def test_fuzz_decode_random_bytes(payload: bytes) -> None:
    try:
        decoded = m.decode(payload)
    except EcrMessageError as exc:
        assert exc.reason
        return
    assert "cmd" in decoded or "rsp" in decoded


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS = st.sampled_from(["cmd", "rsp", "seq", "result", *m.FIELDS, "pan"])
_NEAR = st.fixed_dictionaries(
    {"cmd": st.sampled_from(sorted(m.COMMANDS)), "seq": st.integers(-2, 10001)},
    optional={"rsp": st.sampled_from(sorted(m.COMMANDS))},
).flatmap(lambda base: st.dictionaries(_KEYS, _JSON, max_size=5).map(lambda x: {**base, **x}))


@given(st.one_of(_JSON, _NEAR))
def test_fuzz_decode_json_values(value: object) -> None:
    payload = json.dumps(value).encode("ascii")
    try:
        decoded = m.decode(payload)
    except EcrMessageError:
        return
    assert m.decode(m.encode(decoded)) == decoded
