"""Seeds from a pilot: how many a comparison needs for a stated CI half-width and for a stated power.

From a committed entry's per-seed values of ``metric`` (:func:`samples`): with paired rows (a method
and the hard switch), each group's per-seed differences; with the hard switch alone (a pilot of the
regime), each group's hard-switch values, whose spread stands in for the differences' as
``sd_diff = sqrt(2) sd`` (the two methods' runs taken as independent: conservative where pairing by
seed correlates them, as it usually does). Then, with s the spread:

- **half-width**: the smallest n >= 3 with ``t_{0.975, n-1} s / sqrt(n) <= h`` (the tables' Student-t
  interval, :func:`lossmooth.results.inference.t_interval`);
- **power**: the smallest n >= 3 at which the exact sign-flip test the tables use rejects at level
  ``0.05 / family`` (Bonferroni over the primary family: at least Holm's power) in at least ``power`` of
  :data:`TRIALS` simulated experiments whose n differences are resampled from the pilot's own centred,
  rescaled values (its skew and outliers kept) and shifted by the minimal effect ``effect``.

The answer is the larger n over the entry's groups. Where the seed count is fixed by the compute at
hand, :func:`sensitivity` answers the other way round: at n seeds, the half-width to expect and the
smallest effect detected with that power (the effect a plan at that budget can honestly state). ``lossmooth seeds`` prints it with a ``seeds:``
block for the result entry's YAML; ``lossmooth reproduce --check`` recomputes every recorded block from
the committed pilot and fails where the recorded answer no longer follows.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
from scipy import stats

from lossmooth.errors import ConfigError
from lossmooth.results import aggregate as agg
from lossmooth.results import inference

TRIALS = 2000
N_MAX = 1024
_FIELDS = ("pilot", "metric", "halfwidth", "effect", "power", "family", "n")


@dataclasses.dataclass(frozen=True)
class Plan:
    """One group's answer: its label, the spread used (``paired``: of differences; else sqrt(2) x the
    hard switch's), the pilot's n, and the seeds needed for the half-width and for the power."""

    label: str
    sd: float
    paired: bool
    pilot_n: int
    n_halfwidth: int | None
    n_power: int | None


def samples(rows: list[dict], metric: str) -> list[tuple[str, np.ndarray, bool]]:
    """(group label, per-seed values, paired) of ``metric``: paired differences where the rows have a
    method beside the hard switch, else the hard switch's own values."""
    out = []
    for g in agg.paired_values(rows):
        if metric in g["metrics"]:
            d = np.array([r["summary"][metric] - b["summary"][metric] for r, b in g["pairs"]], np.float64)
            out.append((_label(g["rows"][0]), d, True))
    if out:
        return out
    groups: dict = {}
    for r in rows:
        if r["method"] == agg.BASELINE and agg.usable(r) and metric in r.get("summary", {}):
            groups.setdefault(agg.group_label(r), []).append(r)
    return [(_label(rs[0]), np.array([r["summary"][metric] for r in rs], np.float64), False)
            for rs in groups.values()]


def _label(r: dict) -> str:
    hp = ", ".join(f"{k}={v}" for k, v in sorted(r.get("hparams", {}).items()) if k not in ("lr", "schedule"))
    return " ".join(str(x) for x in (r.get("model"), r.get("shift"), r.get("severity"), r["method"], hp) if x not in (None, ""))


def n_for_halfwidth(sd: float, halfwidth: float) -> int | None:
    """The smallest n >= 3 whose Student-t 95% half-width ``t_{0.975,n-1} sd / sqrt(n)`` is <= ``halfwidth``."""
    if sd == 0:
        return inference.MIN_PAIRS
    n = np.arange(inference.MIN_PAIRS, N_MAX + 1)
    ok = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) <= halfwidth
    return int(n[np.argmax(ok)]) if ok.any() else None


def power_at(shape: np.ndarray, n: int, effect: float, alpha: float, seed: int = 0) -> float:
    """The share of TRIALS experiments of n values resampled from ``shape`` (mean 0) + ``effect`` in which
    the sign-flip test's p is <= ``alpha``."""
    rng = np.random.default_rng(seed)
    x = rng.choice(shape, size=(n, TRIALS), replace=True) + effect
    return float(np.mean(inference.sign_flip_p(x, seed=seed) <= alpha))


def _shape(values: np.ndarray, sd: float) -> np.ndarray:
    """The pilot's values centred and rescaled to spread ``sd`` (their skew and outliers kept)."""
    centred = values - values.mean()
    spread = centred.std(ddof=1)
    return centred * (sd / spread) if spread > 0 else np.zeros_like(centred)


def n_for_power(values: np.ndarray, sd: float, effect: float, power: float, alpha: float) -> int | None:
    """The smallest n >= 3 with :func:`power_at` >= ``power`` (the pilot's centred values rescaled to ``sd``),
    by doubling then bisection (power grows with n)."""
    shape = _shape(values, sd)
    # the exact test cannot reach alpha below n = log2(2 / alpha) whatever the effect
    lo = max(inference.MIN_PAIRS, int(np.ceil(np.log2(2.0 / alpha))))
    if power_at(shape, lo, effect, alpha) >= power:
        return lo
    hi = lo
    while power_at(shape, hi, effect, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > N_MAX:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(shape, mid, effect, alpha) >= power else (mid, hi)
    return hi


def spreads(rows: list[dict], metric: str, power: float, family: int) -> list[tuple]:
    """(label, values, paired, sd) per group of :func:`samples`, ``sd`` the spread of a difference
    (bad input, e.g. a pilot of fewer than 3 seeds: one-line :class:`ConfigError`)."""
    if not (0 < power < 1) or family < 1:
        raise ConfigError(f"seeds: --power must be in (0, 1) and --family >= 1, got {power} and {family}")
    found = samples(rows, metric)
    if not found:
        have = sorted(agg.metrics_of(rows))
        raise ConfigError(f"seeds: the entry's runs have no '{metric}' (they have {', '.join(have)})")
    out = []
    for label, values, paired in found:
        if len(values) < inference.MIN_PAIRS:
            raise ConfigError(f"seeds: {label} has {len(values)} seed(s); a pilot needs at least "
                              f"{inference.MIN_PAIRS} to estimate a spread")
        out.append((label, values, paired, float(np.std(values, ddof=1)) * (1.0 if paired else np.sqrt(2.0))))
    return out


def plan(rows: list[dict], metric: str, halfwidth: float | None, effect: float | None, power: float = 0.8,
         family: int = 1) -> list[Plan]:
    """Every group's :class:`Plan` for ``metric`` (bad input: one-line :class:`ConfigError`)."""
    if halfwidth is None and effect is None:
        raise ConfigError("seeds: give --halfwidth (the CI half-width wanted) and/or --effect (the minimal "
                          "effect to detect)")
    for name, v in (("--halfwidth", halfwidth), ("--effect", effect)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise ConfigError(f"seeds: {name} must be a positive number, got {v}")
    out = []
    for label, values, paired, sd in spreads(rows, metric, power, family):
        out.append(Plan(label, sd, paired, len(values),
                        n_for_halfwidth(sd, halfwidth) if halfwidth is not None else None,
                        n_for_power(values, sd, effect, power, 0.05 / family) if effect is not None else None))
    return out


def answer(plans: list[Plan], halfwidth=None, effect=None) -> int | None:
    """The seeds the entry needs: the largest of every group's requested answers (None: one is not
    reachable below N_MAX)."""
    ns = [n for p in plans for n, asked in ((p.n_halfwidth, halfwidth), (p.n_power, effect)) if asked is not None]
    return None if not ns or any(n is None for n in ns) else max(ns)


def min_effect(values: np.ndarray, sd: float, n: int, power: float, alpha: float) -> float | None:
    """The smallest effect (to 0.5% of sd) that :func:`power_at` detects with ``power`` at n seeds (None: the
    exact test cannot reach ``alpha`` at n, whatever the effect)."""
    shape = _shape(values, sd)
    if n < np.log2(2.0 / alpha) or sd == 0:
        return None if n < np.log2(2.0 / alpha) else 0.0
    lo, hi = 0.0, sd
    while power_at(shape, n, hi, alpha) < power:
        lo, hi = hi, hi * 2
    while hi - lo > 0.005 * sd:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power_at(shape, n, mid, alpha) >= power else (mid, hi)
    return hi


def sensitivity(rows: list[dict], metric: str, n: int, power: float = 0.8, family: int = 1) -> str:
    """What ``lossmooth seeds --seeds n`` prints: per group of the pilot, the 95% t half-width to expect
    at n seeds and the smallest effect detected with ``power`` (exact sign-flip test at 0.05/family)."""
    if n < inference.MIN_PAIRS:
        raise ConfigError(f"seeds: --seeds must be at least {inference.MIN_PAIRS}, got {n}")
    lines, worst = [f"at {n} seeds, {metric}:"], 0.0
    for label, values, paired, sd in spreads(rows, metric, power, family):
        h = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n))
        e = min_effect(values, sd, n, power, 0.05 / family)
        worst = max(worst, e if e is not None else np.inf)
        lines.append(f"  {label}: sd_diff {sd:.4g}; 95% t half-width about {h:.4g}; smallest effect detected with "
                     f"{power:.0%} power (exact sign-flip test at 0.05/{family}): "
                     + (f"{e:.4g}" if e is not None else "none (too few seeds for this level)"))
    if np.isfinite(worst) and worst > 0:
        step = 10.0 ** (np.floor(np.log10(worst)) - 2)  # rounded up to 3 significant figures
        up = float(np.ceil(worst / step) * step)
        lines.append(f"a plan at {n} seeds can state a minimal effect of {up:.6g} or more "
                     f"(`lossmooth seeds ... --effect {up:.6g}` then answers with at most {n})")
    return "\n".join(lines)


def text(pilot: str, metric: str, plans: list[Plan], halfwidth, effect, power: float, family: int) -> str:
    """What ``lossmooth seeds`` prints: each group's spread and answers, the entry's answer, and the block
    to record in the result entry."""
    lines = [f"seed plan from the committed entry '{pilot}', metric {metric}:"]
    for p in plans:
        kind = "paired differences" if p.paired else "hard switch alone, sd_diff = sqrt(2) sd (runs independent)"
        parts = []
        if halfwidth is not None:
            parts.append(f"n = {p.n_halfwidth if p.n_halfwidth else f'> {N_MAX}'} for a 95% t half-width <= {halfwidth:g}")
        if effect is not None:
            parts.append(f"n = {p.n_power if p.n_power else f'> {N_MAX}'} for {power:.0%} power at an effect of "
                         f"{effect:g} (exact sign-flip test at 0.05/{family})")
        lines.append(f"  {p.label}: {p.pilot_n} pilot seeds, {kind} {p.sd:.4g}; " + "; ".join(parts))
    n = answer(plans, halfwidth, effect)
    lines.append(f"seeds needed: {n if n else f'more than {N_MAX}'}")
    block = {"pilot": pilot, "metric": metric, "power": power, "family": family, "n": n}
    if halfwidth is not None:
        block["halfwidth"] = halfwidth
    if effect is not None:
        block["effect"] = effect
    lines.append("record it in the result entry (experiments/<name>.yaml):")
    lines.append("seeds: {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in block.items()) + "}")
    return "\n".join(lines)


def recorded(entry) -> dict:
    """The entry's ``seeds`` block as values (bad input: one line naming the missing field)."""
    block = {k: json.loads(v) for k, v in entry.seeds}
    missing = [k for k in ("pilot", "metric", "n") if k not in block]
    if missing or ("halfwidth" not in block and "effect" not in block):
        raise ConfigError(f"entry '{entry.name}': seeds needs pilot, metric, n and halfwidth and/or effect "
                          f"(missing: {', '.join(missing) or 'halfwidth/effect'}); `lossmooth seeds` prints the block")
    unknown = set(block) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"entry '{entry.name}': seeds has unknown field(s) {', '.join(sorted(unknown))}")
    return block
