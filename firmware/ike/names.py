"""Human names for transforms, so the trace can say what a peer offered."""

from __future__ import annotations

from .constants import Dh, Encr, Esn, Integ, Prf, TransformType

_BY_TYPE = {
    TransformType.ENCR: ("ENCR", Encr),
    TransformType.PRF: ("PRF", Prf),
    TransformType.INTEG: ("AUTH", Integ),
    TransformType.DH: ("", Dh),
    TransformType.ESN: ("", Esn),
}


def transform_name(ttype: int, tid: int) -> str:
    entry = _BY_TYPE.get(ttype)
    if entry is None:
        return f"TRANSFORM_{ttype}_{tid}"
    prefix, enum = entry
    name = enum.name_of(tid)
    return f"{prefix}_{name}" if prefix else name
