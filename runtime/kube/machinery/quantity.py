"""Resource quantities (``500m``, ``1.5Gi``, ``2``) as k8s.io/apimachinery/pkg/api/resource has them.

A ``Quantity`` is an exact rational value and the format it was written in. ``str()`` gives
the canonical form the API server stores and prints: a decimal quantity uses the largest
SI suffix that keeps an integer mantissa (``1500m`` stays, ``1000m`` becomes ``1``, ``0.5``
becomes ``500m``); a binary one uses the largest power-of-1024 suffix (``1024Mi`` becomes
``1Gi``) and falls back to decimal below 1024 or for fractions, as ``resource.Quantity``
does. Sums keep the format of the left operand (``Quantity.Add``), which is why quota usage
prints ``1536Mi`` when the first pod asked for ``512Mi``. Values are rounded up to
nanounits, the smallest scale Kubernetes keeps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_RE = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")

QUANTITY_MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


class QuantityError(ValueError):
    """Not a quantity; the message is apimachinery's."""


@dataclass(frozen=True)
class Quantity:
    value: Fraction
    binary: bool = False

    @classmethod
    def parse(cls, s: object) -> Quantity:
        if isinstance(s, bool):
            raise QuantityError(QUANTITY_MSG)
        if isinstance(s, int):
            return cls(Fraction(s))
        if isinstance(s, float):
            return cls(_round_nano(Fraction(str(s))))
        m = _RE.fullmatch(str(s).strip())
        if m is None:
            raise QuantityError(QUANTITY_MSG)
        num, suf = Fraction(m.group(1)), m.group(2) or ""
        if suf in _BINARY:
            return cls(_round_nano(num * 2 ** _BINARY[suf]), binary=True)
        if suf[:1] in ("e", "E"):
            return cls(_round_nano(num * Fraction(10) ** int(suf[1:])))
        return cls(_round_nano(num * Fraction(10) ** _DECIMAL[suf]))

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.value + other.value, self.binary)

    def __str__(self) -> str:
        v = self.value
        if v == 0:
            return "0"
        sign = "-" if v < 0 else ""
        a = abs(v)
        if self.binary and a.denominator == 1 and a >= 1024:
            n = a.numerator
            for suf, shift in sorted(_BINARY.items(), key=lambda kv: -kv[1]):
                if n % (1 << shift) == 0:
                    return f"{sign}{n >> shift}{suf}"
            return f"{sign}{n}"
        for suf, exp in sorted(_DECIMAL.items(), key=lambda kv: -kv[1]):
            mant = a / Fraction(10) ** exp
            if mant.denominator == 1:
                return f"{sign}{mant.numerator}{suf}"
        return f"{sign}{math.ceil(a * 10**9)}n"

    def milli(self) -> int:
        """MilliValue(): rounded up, as resource.Quantity does."""
        return math.ceil(self.value * 1000)


def _round_nano(v: Fraction) -> Fraction:
    return Fraction(math.ceil(v * 10**9), 10**9)


def canonical(s: object) -> object:
    """The stored form of a quantity string, or the input unchanged when it is not one."""
    try:
        return str(Quantity.parse(s))
    except QuantityError:
        return s


def canonical_list(resources: object) -> None:
    """Canonicalise a ResourceList (``{"cpu": "1000m"}`` -> ``{"cpu": "1"}``) in place."""
    if isinstance(resources, dict):
        for k, v in resources.items():
            resources[k] = canonical(v)
