"""Numbers as the chapters' prose prints them: a value that was never reached or could
not be measured reads as such, never as ``nan``, ``None`` or ``n/a``.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence


def _missing(x: Optional[float]) -> bool:
    return x is None or not math.isfinite(float(x))


def number_text(x: Optional[float], spec: str = ".2f", missing: str = "not measurable", unit: str = "") -> str:
    """``x`` formatted with ``spec`` and followed by ``unit`` (``"%"``), or ``missing``
    when it is None, NaN or infinite."""
    if _missing(x):
        return missing
    return format(int(x) if isinstance(x, int) else float(x), spec) + unit


def per_seed(values: Sequence[Optional[float]], spec: str = ".1f", missing: str = "not reached", unit: str = "",
             sep: str = " / ") -> str:
    """One :func:`number_text` per seed, joined by ``sep`` (``"8.9 / not reached"``)."""
    return sep.join(number_text(v, spec, missing, unit) for v in values)


def estimate_text(est: Optional[float], lo: Optional[float], hi: Optional[float], spec: str = "+.2f",
                  missing: str = "not measurable") -> str:
    """``"+0.31 [-0.05, +0.60]"``; the estimate alone when the interval could not be
    measured (``"+0.31 (no interval)"``); ``missing`` when the estimate could not."""
    if _missing(est):
        return missing
    if _missing(lo) or _missing(hi):
        return f"{format(float(est), spec)} (no interval)"
    return f"{format(float(est), spec)} [{format(float(lo), spec)}, {format(float(hi), spec)}]"


def steps_text(t: Optional[int], steps: int) -> str:
    """``"150"``, or ``"never (within 60 steps)"`` when ``t`` is None: a time in a list."""
    return f"never (within {steps} steps)" if t is None else str(t)


def at_step(t: Optional[int], steps: int) -> str:
    """``"step 150"``, or ``"never within 60 steps"`` when ``t`` is None."""
    return f"never within {steps} steps" if t is None else f"step {t}"


def with_never(frame: Any, columns: Sequence[str], word: str = "never") -> Any:
    """A copy of ``frame`` (a ``pandas.DataFrame``) for display, each of ``columns`` (a
    time in steps, or a ratio of times) as whole numbers, and ``word`` where it is
    missing (a phase a run never reached); other columns as they are."""
    out = frame.copy()
    for c in columns:
        out[c] = [word if _missing(v) else (f"{v:g}" if isinstance(v, float) and not float(v).is_integer()
                                            else str(int(v))) for v in out[c]]
    return out
