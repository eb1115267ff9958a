"""Writes erfc.txt: erfc at points spanning every binade of f64 and f32, of both signs,
correctly rounded to the format from a 200-bit evaluation (mpmath). tests/it/math.rs reads it.

Each line is `f64|f32 <bits of x> <bits of erfc(x)>` in hex. erfc is not odd, so negative x
have lines of their own. Run: python3 erfc_reference.py > erfc.txt
"""

import math
import struct

import mpmath

mpmath.mp.prec = 200


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def f32_after(v, direction):
    bits = struct.unpack("<I", struct.pack("<f", v))[0]
    if v == 0:
        return struct.unpack("<f", struct.pack("<I", 1))[0] if direction > 0 else 0.0
    step = 1 if (v >= 0) == (direction > 0) else -1
    return struct.unpack("<f", struct.pack("<I", bits + step))[0]


def f64_after(v, direction):
    return math.nextafter(v, math.inf if direction > 0 else -math.inf)


def nearest(exact, guess, after):
    """The value of the format nearest to `exact`, searched around `guess`: mpmath's own
    conversion to float rounds twice for subnormal results (to 53 bits, then to the subnormal's
    precision)."""
    candidates = [after(guess, -1), guess, after(guess, 1)]
    return min(candidates, key=lambda c: abs(mpmath.mpf(c) - exact))


def points(lowest_binade, as_format):
    xs = set()
    for e in range(lowest_binade, 5):
        for frac in (1.0, 1.37, 1.999):
            v = as_format(frac * 2.0**e)
            xs.update((v, -v))
    # Dense where erfc is neither 1 nor 2 nor 0 (it underflows near 27.3 in f64, 10.1 in f32),
    # and both sides of each range boundary of the approximation.
    for i in range(1, 8001):
        xs.add(as_format(28.0 * i / 8000))
    for i in range(1, 4001):
        xs.add(as_format(-6.5 * i / 4000))
    for edge in (0.25, 0.84375, 1.25, 1 / 0.35, 6.0, 28.0):
        for k in range(-3, 4):
            v = as_format(edge * (1 + k * 2.0**-20))
            xs.update((v, -v))
    return sorted(x for x in xs if x != 0)


def main():
    print("# erfc reference values, written by erfc_reference.py (mpmath, 200 bits)")
    for x in points(-1074, float):
        exact = mpmath.erfc(mpmath.mpf(x))
        y = nearest(exact, float(exact), f64_after)
        print("f64 %016x %016x" % (struct.unpack("<Q", struct.pack("<d", x))[0],
                                  struct.unpack("<Q", struct.pack("<d", y))[0]))
    for x in points(-149, f32):
        exact = mpmath.erfc(mpmath.mpf(x))
        y = nearest(exact, f32(float(exact)), f32_after)
        print("f32 %08x %08x" % (struct.unpack("<I", struct.pack("<f", x))[0],
                                struct.unpack("<I", struct.pack("<f", y))[0]))


main()
