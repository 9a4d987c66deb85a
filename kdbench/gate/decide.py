"""One decision on one metric of one case group: the t-tests (paired on shared seeds, Welch's
otherwise, a tolerance without noise estimate), the gain over ``ce`` check, the status change,
and the smallest change the seeds can detect; each decision says why in words."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from kdbench.gate.thresholds import DIRECTIONS, Thresholds

BASELINE = "ce"


Values = dict[int, float]  # seed → value


def t_test(base: Values, cur: Values) -> tuple[float, float, str]:
    """(two-sided p, standard error of the difference of means, test name). Paired on the
    seeds both sides share when they share every seed; Welch otherwise. NaN p when there is
    no noise estimate (a single value, or no spread on either side)."""
    b, c = np.array(list(base.values())), np.array(list(cur.values()))
    if base.keys() == cur.keys() and len(b) >= 2:
        seeds = sorted(base)
        diff = np.array([cur[s] - base[s] for s in seeds])
        if np.all(diff == diff[0]):  # one shift on every seed: a change, not noise
            return (1.0 if diff[0] == 0 else 0.0), 0.0, "paired"
        return (
            float(stats.ttest_rel(diff, np.zeros_like(diff)).pvalue),
            float(diff.std(ddof=1) / math.sqrt(len(diff))),
            "paired",
        )
    if min(len(b), len(c)) < 2 or (np.all(b == b[0]) and np.all(c == c[0])):
        return math.nan, math.nan, "none"
    # Welch-Satterthwaite, as scipy's ttest_ind(equal_var=False), which warns of precision
    # loss where one side has almost no spread (a collapse one test image off ce)
    vb, vc = b.var(ddof=1) / len(b), c.var(ddof=1) / len(c)
    se = math.sqrt(vb + vc)
    df = (vb + vc) ** 2 / (vb**2 / (len(b) - 1) + vc**2 / (len(c) - 1))
    return float(2 * stats.t.sf(abs(c.mean() - b.mean()) / se, df)), se, "Welch"


def detectable(se: float, n_base: int, n_cur: int, test: str, alpha: float) -> float:
    """The smallest difference of means a two-sided test at ``alpha`` would call significant
    with this standard error: t_{1−α/2, df} × SE (df: n − 1 paired, Welch–Satterthwaite
    approximated by the smaller side's n − 1 otherwise)."""
    if test == "none" or math.isnan(se):
        return math.nan
    df = (n_cur if test == "paired" else min(n_base, n_cur)) - 1
    return float(stats.t.ppf(1 - alpha / 2, df) * se)


def _effect(metric: str, base_mean: float, delta: float) -> float:
    """A change in the metric's threshold unit: points, or percent of the baseline mean."""
    if DIRECTIONS[metric][1] == "points":
        return delta
    if base_mean:
        return 100.0 * delta / abs(base_mean)
    return math.copysign(math.inf, delta) if delta else 0.0


def fmt_value(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 0.01 else f"{x:.2f}"


def decide(base: Values, cur: Values, metric: str, th: Thresholds) -> dict[str, Any]:
    """Check 1 for one metric of one case group (see the module docstring)."""
    direction, unit = DIRECTIONS[metric]
    b, c = np.array(list(base.values())), np.array(list(cur.values()))
    delta = c.mean() - b.mean()
    effect = _effect(metric, b.mean(), delta)
    p, se, test = t_test(base, cur)
    worse = direction * delta < 0
    change = f"{'drop' if worse else 'rise'} of {fmt_value(abs(effect))} {unit}"
    if base == cur:
        decision, why = "unchanged", "identical on every seed"
    elif abs(effect) <= th.min_effect[metric]:
        decision, why = (
            "unchanged",
            (f"{change}, below the minimum effect {th.min_effect[metric]:g} {unit}"),
        )
    elif test == "none" and abs(effect) <= th.tolerance_for(metric):
        decision, why = (
            "unchanged",
            (
                f"{change} within the tolerance {th.tolerance_for(metric):g}"
                f" {unit} (no noise estimate: one seed or no spread)"
            ),
        )
    elif test != "none" and p >= th.alpha:
        decision, why = (
            "unchanged",
            (f"{change} within seed noise ({test} t-test p = {p:.2g} ≥ {th.alpha:g})"),
        )
    else:
        decision = "regression" if worse else "improvement"
        why = (
            f"{change} beyond the tolerance {th.tolerance_for(metric):g} {unit} (no noise estimate)"
            if test == "none"
            else f"{change}, {test} t-test p = {p:.2g} < {th.alpha:g}"
        )
    return {
        "check": "value",
        "baseline": b.mean(),
        "baseline_std": _std(b),
        "baseline_n": len(b),
        "current": c.mean(),
        "current_std": _std(c),
        "current_n": len(c),
        "delta": delta,
        "effect": effect,
        "unit": unit,
        "p": p,
        "test": test,
        "detectable": _in_unit(metric, b.mean(), detectable(se, len(b), len(c), test, th.alpha)),
        "decision": decision,
        "why": why,
    }


def _in_unit(metric: str, base_mean: float, value: float) -> float:
    return abs(_effect(metric, base_mean, value)) if not math.isnan(value) else math.nan


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def gains(method: Values, ce: Values) -> Values:
    """Per-seed gain of a method over ``ce`` of the same pair and seed."""
    return {s: method[s] - ce[s] for s in method.keys() & ce.keys()}


def decide_gain(base: Values, cur: Values, metric: str, th: Thresholds) -> dict[str, Any] | None:
    """Check 2 for one metric of one method: ``base``/``cur`` are its per-seed gains over ce.
    A method that became identical to ce on every seed (its gains all zero, where the baseline's
    were not) is a no-op: its distillation term stopped acting, whatever its gain was. Else, a
    baseline gain significant at ``gain_alpha`` that is significantly smaller now, by more than
    ``gain_min_effect``, is lost. None when there is nothing to decide."""
    direction, unit = DIRECTIONS[metric]
    b, c = np.array(list(base.values())), np.array(list(cur.values()))
    if len(b) < 2 or not len(c):
        return None
    alpha, min_effect = th.alpha_gain, th.gain_min_for(metric)
    delta = c.mean() - b.mean()
    p_two, se, test = t_test(base, cur)
    lost = direction * delta < 0
    # one-sided: only a smaller gain counts here (a larger one is check 1's improvement)
    p = (p_two / 2 if lost else 1 - p_two / 2) if not math.isnan(p_two) else math.nan
    row = {
        "check": "gain over ce",
        "baseline": b.mean(),
        "baseline_std": _std(b),
        "baseline_n": len(b),
        "current": c.mean(),
        "current_std": _std(c),
        "current_n": len(c),
        "delta": delta,
        "effect": delta,
        "unit": unit,
        "p": p,
        "test": test,
        "detectable": detectable(se, len(b), len(c), test, 2 * alpha),
    }
    gain = f"gain over ce {b.mean():+.2f} → {c.mean():+.2f} {unit}"
    if len(c) >= 2 and not c.any() and b.any():
        return {
            **row,
            "decision": "regression",
            "why": f"no-op: identical to ce on every seed ({gain}; a distillation term "
            f"that stopped acting?)",
        }
    if direction * b.mean() <= 0:
        return None
    spread = b.std(ddof=1)
    p_gain = (
        0.0
        if spread == 0
        else float(stats.ttest_1samp(direction * b, 0.0, alternative="greater").pvalue)
    )
    if p_gain >= alpha:
        return None
    if (
        lost
        and abs(delta) > min_effect
        and (
            (not math.isnan(p) and p < alpha)
            or (math.isnan(p) and abs(delta) > th.tolerance_for(metric))
        )
    ):
        return {
            **row,
            "decision": "regression",
            "why": f"lost its gain: {gain} (the baseline gain had p = {p_gain:.2g}; "
            f"{test} one-sided p = {p:.2g} < {alpha:g})",
        }
    return {**row, "decision": "unchanged", "why": f"kept its gain: {gain}"}


def status_change(base_ok: int, base_n: int, cur_ok: int, cur_n: int) -> dict[str, Any] | None:
    """A group that lost (or regained) every ok seed: decided on its status alone."""
    if (base_ok == 0) == (cur_ok == 0):
        return None
    return {
        "check": "status",
        "baseline": base_ok,
        "baseline_n": base_n,
        "current": cur_ok,
        "current_n": cur_n,
        "unit": "ok seeds",
        "decision": "regression" if cur_ok == 0 else "improvement",
        "why": "no ok seed left" if cur_ok == 0 else "ok again",
    }
