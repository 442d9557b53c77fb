"""The shipped card profiles as specs: what each one exercises and what a terminal must do."""

from __future__ import annotations

from datetime import date

from rig.profiles.generate import (
    ALWAYS,
    ATR,
    CDOL1,
    CDOL2,
    CL_PDOL,
    ENC_PIN,
    IAC,
    IF_SUPPORTED,
    NEXT,
    NO_CVM,
    ONLINE_PIN,
    OVER_X,
    PLAIN_PIN,
    SIGNATURE,
    UNDER_X,
    Spec,
    cvm,
    test_key,
    with_luhn,
)

VISA_PAN = with_luhn("476173900101001")
MC_PAN = with_luhn("541333900000001")
MC_DEBIT_PAN = with_luhn("541333900000002")
UPI_PAN = with_luhn("622526900000001")


def _visa(n: int) -> str:
    return with_luhn(f"4761739001010{n:02d}")


def _iac(denial: str) -> dict[str, str]:
    return IAC | {"denial": denial}


def _contactless(flavour: str, cryptogram: bool, pan: str, expiry: date) -> dict:
    """The contactless section; without a cryptogram at GPO its record carries the CDOLs the
    terminal needs for GENERATE AC. The AIP announces no ODA (the applications have none)."""
    t2 = f"{pan}D{expiry:%y%m}201" + "0" * 13
    record = {"57": t2 + ("F" if len(t2) % 2 else ""), "5F34": "01"}
    if not cryptogram:
        record |= {"8C": CDOL1, "8D": CDOL2}
    return {
        "contactless": {
            "flavour": flavour,
            "gpo_returns_cryptogram": cryptogram,
            "pdol": CL_PDOL if flavour == "visa" else "",
            "aip": "0080" if flavour == "visa" else "1880",
            "afl": "08010100",
            "records": {1: {1: record}},
            **({"ctq": "8000"} if flavour == "visa" else {}),
        }
    }


def specs() -> list[Spec]:
    """Every shipped profile, in README order."""
    exp = date(2031, 12, 31)
    return [
        Spec("visa-credit-online-pin-dda", "Visa credit, online PIN, DDA",
             "DDA with an issuer and ICC certificate chain; CVM list preferring online PIN",
             "DDA succeeds; online PIN captured; ARQC sent online; online approval (TC)",
             pan=_visa(1), oda="dda"),
        Spec("mc-sda-offline-plaintext-pin", "Mastercard, SDA, offline plaintext PIN",
             "SDA over the ODA records and the AIP; offline plaintext PIN verified by the card",
             "SDA succeeds; VERIFY plaintext PIN 1234 answers 9000; approval (online or TC)",
             scheme="mastercard", aid="A0000000041010", label="MASTERCARD", pan=MC_PAN,
             cvn="mc-16", oda="sda", cvm_list=cvm([(PLAIN_PIN, ALWAYS)])),
        Spec("mc-debit-cda", "Mastercard debit, CDA, online PIN",
             "CDA: the GENERATE AC response carries a signature over the cryptogram",
             "CDA signature verifies on the ARQC; online PIN; online approval",
             scheme="mastercard", aid="A0000000041010", label="DEBIT MASTERCARD",
             pan=MC_DEBIT_PAN, cvn="mc-20", oda="cda"),
        Spec("unionpay-debit-pboc", "UnionPay-style debit (PBOC CVN 01)",
             "PBOC 2.0 cryptogram version and session key; AID A000000333010101; DDA",
             "DDA succeeds; online PIN; ARQC (PBOC CVN 01) verifies at the host; online approval",
             scheme="unionpay", aid="A000000333010101", label="UnionPay Debit", pan=UPI_PAN,
             cvn="pboc-01", oda="dda"),
        Spec("visa-no-cvm-under-floor", "Visa, no CVM below 50.00",
             "CVM list with 'no CVM required' under amount X = 50.00 and online PIN above it; "
             "consecutive offline limits allow offline approval",
             "amount < 50.00: no CVM, CVM results 1F0002, offline approval (TC) under the floor; "
             "amount >= 50.00: online PIN and online approval",
             pan=_visa(2), cvn="visa-10",
             cvm_list=cvm([(NEXT | NO_CVM, UNDER_X), (NEXT | ONLINE_PIN, OVER_X),
                           (SIGNATURE, IF_SUPPORTED)], x=5000),
             iac={"denial": "0000000000", "online": "0000000000", "default": "0000000000"},
             risk={"lower_consecutive_offline_limit": 5, "upper_consecutive_offline_limit": 10}),
        Spec("visa-signature", "Visa, signature",
             "CVM list holding only signature (paper)", "CVM signature; receipt with a "
             "signature line; online approval", pan=_visa(3), cvn="visa-10",
             cvm_list=cvm([(SIGNATURE, ALWAYS)])),
        Spec("visa-offline-enciphered-pin", "Visa, offline enciphered PIN, DDA",
             "offline enciphered PIN: the terminal enciphers the PIN block with the ICC public "
             "key (no separate PIN encipherment key)",
             "GET CHALLENGE, VERIFY with P2=88 (enciphered) answers 9000; DDA succeeds; approval",
             pan=_visa(4), oda="dda", cvm_list=cvm([(ENC_PIN, ALWAYS)])),
        Spec("visa-expired", "Visa, expired application",
             "application expiration date (5F24) in the past; IAC-denial sets 'expired "
             "application'",
             "TVR byte 2 bit 7 (expired application) set; offline decline (AAC)",
             pan=_visa(5), cvn="visa-10", effective=date(2019, 1, 1), expiry=date(2023, 12, 31),
             iac=_iac("0040000000")),
        Spec("visa-not-yet-effective", "Visa, not yet effective",
             "application effective date (5F25) in the future; IAC-denial sets 'application "
             "not yet effective'",
             "TVR byte 2 bit 6 (not yet effective) set; offline decline (AAC)",
             pan=_visa(6), cvn="visa-10", effective=date(2045, 1, 1), expiry=date(2049, 12, 31),
             iac=_iac("0020000000")),
        Spec("visa-pin-try-exceeded", "Visa, PIN try limit exceeded",
             "offline plaintext PIN with the PIN try counter (9F17) at 0",
             "GET DATA 9F17 = 00 / VERIFY answers 6983; TVR 'PIN try limit exceeded' and "
             "'cardholder verification not successful'; offline decline (AAC)",
             pan=_visa(7), cvn="visa-10", cvm_list=cvm([(PLAIN_PIN, ALWAYS)]),
             iac=_iac("00A0000000"), risk={"pin_try_counter": 0}),
        Spec("visa-app-blocked", "Visa, application blocked",
             "the only application is blocked: SELECT answers 6283",
             "the blocked application is not selected; no other application: transaction "
             "not possible with this card (no magstripe fallback for a blocked app)",
             pan=_visa(8), cvn="visa-10", risk={"application_blocked": True}),
        Spec("visa-chip-fallback", "Visa, service code 201: chip required, chip fails",
             "service code 2xx (chip card) with a chip that does not answer (mute)",
             "swiped first: terminal must ask for the chip; chip mute: terminal must fall back "
             "to magstripe (POS entry mode 80) and go online",
             pan=_visa(9), cvn="visa-10", interfaces=("contact", "magstripe"),
             extra={"magstripe": {"track2": f"{_visa(9)}=3112201" + "0" * 13},
                    "faults": {"mute": True}}),
        Spec("visa-contactless-only", "Visa contactless only (qVSDC-like)",
             "contactless fast path: GPO returns the ARQC; no contact interface",
             "contactless online approval with the ARQC from GPO; no CVM below the "
             "contactless CVM limit", pan=_visa(10), interfaces=("contactless",),
             extra=_contactless("visa", True, _visa(10), exp)),
        Spec("mc-dual-interface", "Mastercard contact and contactless (M/Chip-like)",
             "dual interface; contactless GPO does not return the cryptogram (GENERATE AC "
             "follows)", "contact: online PIN, online approval; contactless: GENERATE AC "
             "gives ARQC, online approval", scheme="mastercard", aid="A0000000041010",
             label="MASTERCARD", pan=with_luhn("541333900000003"), cvn="mc-16",
             interfaces=("contact", "contactless"),
             extra=_contactless("mastercard", False, with_luhn("541333900000003"), exp)),
        Spec("mc-force-decline", "Mastercard forcing a decline",
             "card risk management answers every GENERATE AC with an AAC",
             "first GENERATE AC returns AAC (CID 00): offline decline; nothing sent online",
             scheme="mastercard", aid="A0000000041010", label="MASTERCARD",
             pan=with_luhn("541333900000004"), cvn="mc-16", risk={"force_decline": True}),
        Spec("visa-issuer-script", "Visa receiving an issuer script",
             "the host answers with a template 72 script (PUT DATA 9F14 = 05) under secure "
             "messaging (SMI / SMC keys)",
             "online approval; the script is delivered after the second GENERATE AC, card "
             "answers 9000; TSI 'script processing performed'", pan=_visa(11),
             app_extra={"issuer_scripts": [{"template": 72, "command": "put_data",
                                            "data": {"9F14": "05"}}]}),
        Spec("visa-bad-oda", "Visa with a bad ODA signature (DDA)",
             "issuer certificate deliberately corrupted (documented in crypto.oda_invalid)",
             "DDA fails: TVR byte 1 bit 4 (DDA failed) set; IAC-denial has that bit: offline "
             "decline (AAC)", pan=_visa(12), oda="dda", iac=_iac("0800000000"),
             corrupt="issuer_certificate"),
        Spec("magstripe-only", "Magstripe-only card (service code 101)",
             "a card with tracks and no chip", "magstripe read; no chip prompt (service code "
             "101); online authorisation with online PIN", kind="magstripe",
             extra=_magstripe()),
        Spec("prepaid-purse", "Prepaid stored-value purse",
             "purse load / purchase / balance per docs/prepaid.md with MAC1 / MAC2 / TAC",
             "balance 50.00; load of 20.00 gives 70.00; purchase above the balance answers "
             "9401; every MAC and TAC verifies", kind="purse", extra=_purse()),
    ]  # fmt: skip


def _magstripe() -> dict:
    pan = with_luhn("476173900101013")
    return {
        "id": "magstripe-only",
        "title": "Magstripe-only card (service code 101)",
        "purpose": "a card with tracks and no chip",
        "expected": "magstripe read; no chip prompt (service code 101); online authorisation "
        "with online PIN",
        "test_material": True,
        "kind": "magstripe",
        "interfaces": ["magstripe"],
        "magstripe": {
            "track1": f"B{pan}^TEST/CARD^3112101000000000000",
            "track2": f"{pan}=3112101" + "0" * 13,
        },
    }


def _purse() -> dict:
    pid = "prepaid-purse"
    return {
        "id": pid,
        "title": "Prepaid stored-value purse",
        "purpose": "purse load / purchase / balance per docs/prepaid.md with MAC1 / MAC2 / TAC",
        "expected": "balance 50.00; load of 20.00 gives 70.00; purchase above the balance "
        "answers 9401; every MAC and TAC verifies",
        "test_material": True,
        "kind": "purse",
        "interfaces": ["contact"],
        "atr": ATR,
        "purse": {
            "aid": "F0504F5352494701",
            "label": "POSRIG PURSE",
            "asn": "1000000000000001",
            "keys": {k: test_key(pid, k) for k in ("mlk", "mpk", "mtk")},
            "key_version": 1,
            "algorithm": 0,
            "initial_balance": 5000,
            "max_balance": 100000,
        },
    }
