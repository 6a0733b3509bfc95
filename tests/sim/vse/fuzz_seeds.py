#!/usr/bin/env python3
# fuzz_seeds.py - writes the seed corpus of tests/fuzz/fuzz_vse.c into
# tests/fuzz/corpus/fuzz_vse/ (input format described in fuzz_vse.c).
# Developer tool, run by hand: python3 tests/sim/vse/fuzz_seeds.py
# Needs the 'cryptography' package only for the PUT KEY seed.
import hashlib
import os
import sys

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "fuzz", "corpus",
                   "fuzz_vse")
SEID = "5653000100000001"          # the fuzz card's fixed seId
LEVEL = {0x00: 0, 0x01: 1, 0x03: 2, 0x11: 3, 0x13: 4, 0x33: 5}


def rec(apdu_hex, wrap=True, reopen=False, reset=False):
    a = bytes.fromhex(apdu_hex)
    f = (1 if wrap else 0) | (2 if reopen else 0) | (4 if reset else 0)
    return bytes([f, len(a) >> 8, len(a) & 0xFF]) + a


def seed(name, sl, records, session=True):
    head = bytes([(1 if session else 0) | (LEVEL[sl] << 4)])
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(head + b"".join(records))


def lv(b):
    return bytes([len(b)]) + b


def apdu(cla, ins, p1, p2, data=b"", le=True):
    a = bytes([cla, ins, p1, p2])
    if data:
        a += bytes([len(data)]) + data
    if le:
        a += b"\x00"
    return a.hex()


def main():
    os.makedirs(OUT, exist_ok=True)
    seed("plain_get_data", 0x00, [
        rec("00A4040000", wrap=False),
        rec("80CA9F7F00", wrap=False),
        rec("80CA006600", wrap=False),
        rec("80CA00E000", wrap=False),
        rec("80CAFF2100", wrap=False),
        rec("80CA004500", wrap=False),
        rec("0070000001", wrap=False),
        rec("01A4040008A000000151000000", wrap=False),
        rec("8150300008010203040506070800", wrap=False),
        rec("0070800100", wrap=False),
        rec("848200001000000000000000000000000000000000", wrap=False),
    ], session=False)
    seed("session_get_status", 0x03, [
        rec("80F28002024F0000"),
        rec("80F24002024F0000"),
        rec("80F22000024F0000"),
        rec("80F21002024F0000"),
        rec("80F240020A4F005C054F9F70C5CC00"),
        rec("80F24003024F0000"),
        rec("80CA00C100"),
        rec("80CA00C200"),
        rec("80F28002024F0000", wrap=False),
    ])
    sd_elf = bytes.fromhex("A0000001515350")
    sd_mod = bytes.fromhex("A000000151535041")
    ssd = bytes.fromhex("A000000999000001")
    params = bytes.fromhex("C904810203" "70" "EF08C8021000C7020100")
    inst = lv(sd_elf) + lv(sd_mod) + lv(ssd) + lv(b"\x80\x40\x00") + \
        lv(params) + b"\x00"
    perso = b"\x00\x00" + lv(ssd) + b"\x00\x00\x00"
    seed("ssd_lifecycle", 0x33, [
        rec(apdu(0x80, 0xE6, 0x0C, 0x00, inst)),
        rec(apdu(0x80, 0xE6, 0x20, 0x00, perso)),
        rec(apdu(0x80, 0xD8, 0x00, 0x81, b"\x30" + bytes.fromhex(
            "88111080d2a5b08fa0ee51143b459e638106df03504a77") * 3)),
        rec(apdu(0x80, 0xF0, 0x40, 0x80, ssd)),
        rec(apdu(0x80, 0xF0, 0x60, 0x00, ssd)),
        rec(apdu(0x80, 0xF0, 0x40, 0x0F, ssd)),
        rec("80F24002024F0000"),
        rec(apdu(0x80, 0xE4, 0x00, 0x80, b"\x4F" + lv(ssd))),
    ])
    elf = bytes.fromhex("A0000009991001")
    mod = bytes.fromhex("A000000999100101")
    hdr = bytes.fromhex("DECAFFED0102040001") + lv(elf)
    cap = b"\x01\x00" + bytes([len(hdr)]) + hdr + \
        b"\x03\x00" + bytes([1 + 1 + len(mod) + 2]) + b"\x01" + lv(mod) + \
        b"\x00\x10" + b"\x06\x00\x20" + bytes(range(32))
    h = hashlib.sha256(cap).digest()
    stream = b"\xC4" + bytes([0x81, len(cap)]) + cap
    load = lv(elf) + b"\x00" + lv(h) + lv(bytes.fromhex("EF04C6020100")) + \
        b"\x00"
    app = lv(elf) + lv(mod) + lv(mod + b"\x01") + lv(b"\x00") + \
        lv(bytes.fromhex("C900EF04C8020040")) + b"\x00"
    seed("load_install", 0x03, [
        rec(apdu(0x80, 0xE6, 0x02, 0x00, load)),
        rec(apdu(0x80, 0xE8, 0x00, 0x00, stream[:40])),
        rec(apdu(0x80, 0xE8, 0x80, 0x01, stream[40:])),
        rec(apdu(0x80, 0xE6, 0x0C, 0x00, app)),
        rec(apdu(0x80, 0xE6, 0x20, 0x00, b"\x00\x00" + lv(mod + b"\x01") +
                 b"\x00\x00\x00")),
        rec(apdu(0x80, 0xE2, 0x08, 0x00, bytes.fromhex("010103AABBCC"))),
        rec(apdu(0x80, 0xE2, 0x90, 0x01, bytes.fromhex("5F200141"))),
        rec(apdu(0x80, 0xE4, 0x00, 0x80, b"\x4F" + lv(elf))),
    ])
    seed("dm_token_delete", 0x13, [
        rec(apdu(0x80, 0xE4, 0x00, 0x00, b"\x4F" + lv(elf) + b"\x9E\x81\x80" +
                 bytes(128))),
        rec(apdu(0x80, 0xE4, 0x00, 0x00, bytes.fromhex("D00101D20130"))),
        rec(apdu(0x80, 0xE6, 0x10, 0x00, lv(ssd) + b"\x00" + lv(elf) +
                 b"\x00\x00\x00")),
        rec(apdu(0x80, 0xF0, 0x80, 0x7F)),
        rec(apdu(0x80, 0xF0, 0x80, 0x0F)),
    ])
    try:
        from cryptography.hazmat.primitives.ciphers import (Cipher,
                                                            algorithms, modes)
    except ImportError:
        print("cryptography missing: PUT KEY seed skipped", file=sys.stderr)
        return
    d = hashlib.sha256(SEID.encode()).digest()[:16]

    def ecb(k, b):
        return Cipher(algorithms.AES(k), modes.ECB()).encryptor().update(b)

    dek = ecb(b"DEMOONLY-ISD-DEK", d)
    key = bytes(range(0x40, 0x50))
    ct = Cipher(algorithms.AES(dek), modes.CBC(bytes(16))).encryptor() \
        .update(key)
    kcv = ecb(key, b"\x01" * 16)[:3]
    blk = b"\x88\x11\x10" + ct + b"\x03" + kcv
    seed("put_key", 0x03, [
        rec(apdu(0x80, 0xD8, 0x00, 0x81, b"\x31" + blk * 3)),
        rec("80500000080102030405060700", wrap=False),
        rec(apdu(0x80, 0xD8, 0x31, 0x01, b"\x31" + b"\x88\x10" + blk[3:]),
            reopen=True),
        rec("80CA00E000"),
        rec(apdu(0x80, 0xE4, 0x00, 0x00, bytes.fromhex("D20131"))),
    ])


if __name__ == "__main__":
    main()
