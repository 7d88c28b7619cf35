"""Metric names (`fid50k_full`, `kid2k_full`, `fid200_full`): parsed without importing torch, so specs load fast."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["fid", "kid"]
KID_MAX_REAL = 1_000_000
_NAME = re.compile(r"^(fid|kid)([0-9]+)(k?)_full$")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    num_gen: int
    """Generated images."""
    max_real: int | None
    """Real images used at most (None: all)."""


def parse_metric_name(name: str) -> MetricSpec:
    """`fid50k_full` -> MetricSpec(kind="fid", num_gen=50000, max_real=None); bad names raise ValueError."""
    match = _NAME.match(name)
    if match is None or int(match.group(2)) == 0:
        raise ValueError(
            f"unknown metric {name!r}: use <fid|kid><count>[k]_full with a positive integer count, "
            "e.g. fid50k_full, kid50k_full, fid2k_full, fid200_full (see docs/metrics.md)"
        )
    kind, digits, thousands = match.groups()
    num_gen = int(digits) * (1000 if thousands else 1)
    return MetricSpec(name, kind, num_gen, KID_MAX_REAL if kind == "kid" else None)
