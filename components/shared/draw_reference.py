#!/usr/bin/env python3
"""An independent implementation of the draw rule `usher-draw-v1`
(components/shared/src/draw.rs), written from its docs with hashlib and
integers only: anyone can recompute a draw's digests and ranking from the
entries, the seed and the counts. The vectors checked at the bottom are the
ones the Rust tests (src/draw/tests.rs) check too.

    python3 components/shared/draw_reference.py    # runs the vectors
"""
import hashlib
import struct

RULE = b"usher-draw-v1"


def log2_fixed(x):
    """log2(x) for 0 < x < 2^64 with 32 fractional bits (Q31 mantissa squaring)."""
    k = x.bit_length() - 1
    z = ((x << (63 - k)) & (2**64 - 1)) >> 32
    frac = 0
    for _ in range(32):
        z = (z * z) >> 31
        frac <<= 1
        if z >= 1 << 32:
            z >>= 1
            frac |= 1
    return (k << 32) | frac


def key(x, score):
    x |= 1
    clock = (64 << 32) - log2_fixed(x)
    return (clock << 25) // min(score + 1, 2**64 - 1)


def lp(text):
    b = text.encode()
    return struct.pack(">I", len(b)) + b


def draw(entries, seed, selection_count, waitlist_count):
    """entries: [(globalUserId, score)] -> (input digest, result digest, ranking)."""
    entries = sorted(entries, key=lambda e: e[0].encode())
    inputs = hashlib.sha256()
    for fan, score in entries:
        inputs.update(lp(fan) + struct.pack(">Q", score))
    keyed = []
    for i, (fan, score) in enumerate(entries):
        h = hashlib.sha256(RULE + lp(seed) + fan.encode()).digest()
        keyed.append((key(int.from_bytes(h[:8], "big"), score), i))
    keyed.sort()
    n = len(entries)
    winners = min(selection_count, n)
    waitlist = min(waitlist_count, n - winners)
    result = hashlib.sha256(struct.pack(">QQ", selection_count, waitlist_count))
    ranking = []
    for rank, (_, i) in enumerate(keyed):
        verdict = 1 if rank < winners else (2 if rank < winners + waitlist else 3)
        result.update(lp(entries[i][0]) + bytes([verdict]))
        ranking.append(entries[i][0])
    return inputs.hexdigest(), result.hexdigest(), ranking


if __name__ == "__main__":
    i, r, order = draw([("fan-%03d" % n, (n * 7) % 50) for n in range(20)], "seed-1", 5, 3)
    assert i == "ec72d2e49915c1e7173c7ad84e3ec40b88de19de1914e820cc6f9659ae8dc59b", i
    assert r == "8400685066ed5261e15ca054e82c7e0c5be3682553950774afe2623dc8f6ba26", r
    assert order[:3] == ["fan-011", "fan-019", "fan-012"], order
    i, r, order = draw([("b", 20), ("a", 1), ("c", 0)], "s", 1, 1)
    assert (i, r, order) == (
        "e88916c43b57a372906afa1ce9db16276ad4d5aac2042972c6cceb66dcfcc61c",
        "fd93b603591975eb354a419ae9535d38a839f14a6eca2e29e97ca906ccc42eaf",
        ["b", "a", "c"],
    )
    i, r, order = draw([("u%d" % n, (n * n) % 1000) for n in range(1000)], "vector", 100, 50)
    assert i == "1559815646290108ff025e69690f2d0bdb81f1e1644d8394c20adbb1f5017e3d", i
    assert r == "5a5d249fc02f8cc061c80d9029793c5c4602a56e9f92f7783ffca784a05aceb3", r
    assert order[:3] == ["u509", "u750", "u65"], order
    print("draw_reference: the vectors match")
