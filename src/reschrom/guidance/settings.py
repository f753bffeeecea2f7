"""Guidance settings as the config holds them, checked without torch (at planning time).

:data:`METHODS`, the one-line :class:`GuidanceError`, the checks of a scale and a t/T window,
and the checks of the ``guidance_design.methods`` entries of the config (unknown method, scale
≤ 0, window outside [0, 1] or empty, a per-band scale list whose length is not the model's band
count), with the labels the experiment's tables give each setting. No torch (the theory layer and
the standard library): ``reschrom.config`` calls these while Snakemake plans.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

METHODS = ("cfg", "interval", "bands", "chroma", "chroma_window", "chroma_onset", "fdg", "apg")
"""Guidance methods of :func:`reschrom.guidance.rules.make_rule` and of the config."""

BAND_METHODS = ("cfg", "interval", "bands", "chroma", "chroma_window", "chroma_onset")
"""The methods :class:`reschrom.guidance.rules.BandRule` implements (the others wrap diffusers guiders)."""

CHROMA_METHODS = ("chroma", "chroma_window", "chroma_onset")
"""The chromatography-scheduled methods: they need the model's schedule (r_m(t), eq. 18)."""


def default_share(method: str) -> float:
    """θ of ``chroma_onset`` (0.3) and of ``chroma_window`` (0.5) where the config gives none."""
    return 0.3 if method == "chroma_onset" else 0.5


class GuidanceError(ValueError):
    """A bad guidance setting; the message is one line naming the key."""


def check_scale(scale: float, key: str = "scale") -> float:
    s = float(scale)
    if not (s > 0 and math.isfinite(s)):
        raise GuidanceError(f"{key}: {scale!r} is not a positive guidance scale")
    return s


def check_window(window: Sequence[float], key: str = "window") -> tuple[float, float]:
    if len(window) != 2:
        raise GuidanceError(f"{key}: {list(window)!r} is not a window [lo, hi]")
    lo, hi = float(window[0]), float(window[1])
    if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
        raise GuidanceError(f"{key}: [{lo}, {hi}] lies outside [0, 1]")
    if not lo < hi:
        raise GuidanceError(f"{key}: [{lo}, {hi}] is empty (lo must be below hi)")
    return lo, hi


def setting_label(entry: Mapping[str, Any]) -> str:
    """A short label of a method entry's parameters besides its scales (``"p=1"``, ``"t∈[0.2, 0.8]"``)."""
    m = entry["method"]
    if m == "interval":
        lo, hi = entry.get("window", (0.0, 1.0))
        return f"t∈[{lo:g}, {hi:g}]"
    if m == "chroma":
        return f"p={float(entry.get('power', 1.0)):g}"
    if m == "chroma_window":
        return f"θ={float(default_share(m) if entry.get('share') is None else entry['share']):g}"
    if m == "chroma_onset":
        return f"θ={float(default_share(m) if entry.get('share') is None else entry['share']):g}, rising"
    if m == "apg":
        return f"η={float(entry.get('eta', 0.0)):g}, r={float(entry.get('rescale', 15.0)):g}"
    if m == "fdg":
        return "high/low"
    if m == "bands":
        return "per band"
    return "-"


def scale_value(scale: Any) -> float:
    """The ``scale`` column: w, or the largest scale of a list (fdg's w_high, bands)."""
    return float(max(scale)) if isinstance(scale, (list, tuple)) else float(scale)


def expand_settings(methods: Sequence[Mapping[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
    """(entry, scale) for every scale of every method entry, in config order."""
    return [(dict(e), s) for e in methods for s in e["scales"]]


def check_methods(methods: Sequence[Mapping[str, Any]], num_levels: int | None, key: str) -> None:
    """One-line :class:`GuidanceError` naming ``key`` for a bad entry:
    an unknown method, a scale ≤ 0, a window outside [0, 1] or empty, a per-band scale list
    whose length is not the model's band count ``num_levels`` (when known)."""
    for i, e in enumerate(methods):
        k = f"{key}.{i}"
        m = e.get("method")
        if m not in METHODS:
            raise GuidanceError(f"config key '{k}.method': {m!r} is unknown; allowed: {', '.join(METHODS)}")
        for j, s in enumerate(e.get("scales", [])):
            vals = s if isinstance(s, (list, tuple)) else [s]
            for v in vals:
                try:
                    check_scale(v)
                except GuidanceError:
                    raise GuidanceError(f"config key '{k}.scales.{j}': {v!r} is not a positive guidance scale") from None
            if m == "fdg" and (not isinstance(s, (list, tuple)) or len(s) != 2):
                raise GuidanceError(f"config key '{k}.scales.{j}': fdg takes [w_high, w_low], got {s!r}")
            if m == "bands":
                if not isinstance(s, (list, tuple)):
                    raise GuidanceError(f"config key '{k}.scales.{j}': bands takes one scale per band, got {s!r}")
                if num_levels is not None and len(s) != num_levels:
                    raise GuidanceError(
                        f"config key '{k}.scales.{j}': {len(s)} band scales, but the model's resolution has {num_levels} bands"
                    )
            if m not in ("fdg", "bands") and isinstance(s, (list, tuple)):
                raise GuidanceError(f"config key '{k}.scales.{j}': {m} takes one number per setting, got {s!r}")
        if m in ("chroma_window", "chroma_onset") and not 0.0 <= float(e.get("share") or 0.0) <= 1.0:
            raise GuidanceError(f"config key '{k}.share': {e.get('share')!r} lies outside [0, 1]")
        if m == "interval":
            try:
                check_window(e.get("window", (0.0, 1.0)))
            except GuidanceError as err:
                raise GuidanceError(f"config key '{k}.window': {str(err).split(': ', 1)[1]}") from None


def model_num_levels(config: Mapping[str, Any], name: str, settings: Mapping[str, Any]) -> int | None:
    """The band count M of registry model ``name`` as the experiment samples it, known at
    planning time for the oracle (its ``resolution``, default 64) and trained text models
    (``data.resolution`` / 2^level); None for pipelines and modules (checked when loaded)."""
    from reschrom.theory.resolution import num_levels

    k = int(config.get("kernel", 2))
    e = (config.get("models") or {}).get(name) or {}
    if e.get("kind") == "oracle":
        return num_levels(int(settings.get("resolution") or 64), k)
    if e.get("kind") == "trained" and e.get("task") == "t2i":
        res = int((config.get("data") or {}).get("resolution", 32)) // k ** int(e.get("level", 0))
        return num_levels(res, k)
    return None


