"""Numeric answer scales: map a value from one closed interval to another, and say how.

Valence and arousal come on many scales (a model's [-1, 1], a rating form's [1, 9], ...).
The warehouse stores the value as given (`raw_value`), the value on the target scale
(`predicted_value`) and the formula that links them (`value_mapping`), so every mapped
number can be traced back.
"""

from __future__ import annotations

from collections.abc import Sequence

Scale = tuple[float, float]


def as_scale(value: Sequence[float] | None, what: str, default: Scale | None = None) -> Scale:
    """Validate `[lo, hi]` (two numbers, lo < hi); `what` names the option in errors."""
    if value is None:
        if default is None:
            raise ValueError(f"{what}: give the scale as [low, high], e.g. [1, 9]")
        return default
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{what}: give the scale as [low, high], e.g. [1, 9]; got {value!r}")
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(f"{what}: both ends of the scale must be numbers; got {value!r}") from None
    if not lo < hi:
        raise ValueError(f"{what}: the low end must be below the high end; got {value!r}")
    return lo, hi


def rescale(value: float, source: Sequence[float], target: Sequence[float]) -> float:
    """Map `value` linearly from the interval `source` to the interval `target`.

    >>> rescale(0.0, source=(-1, 1), target=(1, 9))
    5.0
    """
    s_lo, s_hi = float(source[0]), float(source[1])
    t_lo, t_hi = float(target[0]), float(target[1])
    if s_hi == s_lo:
        raise ValueError(f"source scale {source!r} is empty; its ends must differ")
    if (s_lo, s_hi) == (t_lo, t_hi):
        return float(value)
    return (float(value) - s_lo) / (s_hi - s_lo) * (t_hi - t_lo) + t_lo


def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


def mapping_formula(source: Sequence[float], target: Sequence[float]) -> str:
    """Human-readable text of `rescale(v, source, target)`.

    >>> mapping_formula((-1, 1), (1, 9))
    "[-1, 1] -> [1, 9]: v' = (v + 1) / 2 * 8 + 1"
    """
    s_lo, s_hi = float(source[0]), float(source[1])
    t_lo, t_hi = float(target[0]), float(target[1])
    head = f"[{_num(s_lo)}, {_num(s_hi)}] -> [{_num(t_lo)}, {_num(t_hi)}]: "
    if (s_lo, s_hi) == (t_lo, t_hi):
        return head + "v' = v"
    shifted = "v" if s_lo == 0 else (f"(v - {_num(s_lo)})" if s_lo > 0 else f"(v + {_num(-s_lo)})")
    width = s_hi - s_lo
    text = shifted if width == 1 else f"{shifted} / {_num(width)}"
    if t_hi - t_lo != 1:
        text += f" * {_num(t_hi - t_lo)}"
    if t_lo > 0:
        text += f" + {_num(t_lo)}"
    elif t_lo < 0:
        text += f" - {_num(-t_lo)}"
    return head + "v' = " + text


def in_scale(value: float, scale: Sequence[float]) -> bool:
    return float(scale[0]) <= float(value) <= float(scale[1])
