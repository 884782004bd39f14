"""C library math functions with C semantics (inf/NaN instead of Python exceptions).

They back the Lua 5.2 compatibility functions (math.cosh, math.frexp...)
that Orthanc's Lua 5.3 has and lupa's does not.
"""

from __future__ import annotations

import math


def cosh(x: float) -> float:
    try:
        return math.cosh(x)
    except OverflowError:
        return math.inf


def sinh(x: float) -> float:
    try:
        return math.sinh(x)
    except OverflowError:
        return math.copysign(math.inf, x)


def tanh(x: float) -> float:
    return math.tanh(x)


def log10(x: float) -> float:
    if x == 0:
        return -math.inf
    if x < 0 or math.isnan(x):
        return math.nan
    return math.log10(x)


def frexp(x: float) -> tuple[float, int]:
    if math.isinf(x) or math.isnan(x):
        return x, 0
    return math.frexp(x)


def ldexp(x: float, exponent: int) -> float:
    # C clamps huge exponents; Python raises for them.
    exponent = max(min(exponent, 100_000), -100_000)
    try:
        return math.ldexp(x, exponent)
    except OverflowError:
        return math.copysign(math.inf, x)


FUNCTIONS = {"cosh": cosh, "sinh": sinh, "tanh": tanh, "log10": log10, "frexp": frexp, "ldexp": ldexp}
