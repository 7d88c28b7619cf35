"""NVIDIA's ``--augpipe`` presets (stylegan2-ada-pytorch ``train.py``): which transforms each one switches on.

Every enabled transform gets probability multiplier 1, so each is applied with probability p. ``bgc`` is the default
and the paper's recommendation (ADA section 3); the others exist for the paper's ablations.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from stylegan_core.augment.pipe import AugmentPipe

_BLIT = {"xflip": 1, "rotate90": 1, "xint": 1}
_GEOM = {"scale": 1, "rotate": 1, "aniso": 1, "xfrac": 1}
_COLOR = {"brightness": 1, "contrast": 1, "lumaflip": 1, "hue": 1, "saturation": 1}
_FILTER = {"imgfilter": 1}
_NOISE = {"noise": 1}
_CUTOUT = {"cutout": 1}

AUGPIPE_PRESETS: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType(
    {
        name: MappingProxyType(multipliers)
        for name, multipliers in {
            "blit": _BLIT,
            "geom": _GEOM,
            "color": _COLOR,
            "filter": _FILTER,
            "noise": _NOISE,
            "cutout": _CUTOUT,
            "bg": {**_BLIT, **_GEOM},
            "bgc": {**_BLIT, **_GEOM, **_COLOR},
            "bgcf": {**_BLIT, **_GEOM, **_COLOR, **_FILTER},
            "bgcfn": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE},
            "bgcfnc": {**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE, **_CUTOUT},
        }.items()
    }
)


def build_augment_pipe(name: str, p: float) -> AugmentPipe:
    """The ``AugmentPipe`` of preset ``name`` (see ``AUGPIPE_PRESETS``) with initial strength ``p`` in [0, 1]."""
    if name not in AUGPIPE_PRESETS:
        raise ValueError(f"unknown augpipe preset {name!r}; valid presets: {', '.join(AUGPIPE_PRESETS)}")
    if not (math.isfinite(p) and 0 <= p <= 1):
        raise ValueError(f"augment p must be in [0, 1], got {p!r}")
    return AugmentPipe(p=p, **AUGPIPE_PRESETS[name])
