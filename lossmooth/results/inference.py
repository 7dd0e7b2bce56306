"""Inference over seeds: paired intervals and tests, aggregate intervals, multiplicity control.

Everything works on many cells at once: a cell is one column of an ``(n, k)`` array of per-seed values
(``n`` seeds, ``k`` cells); NaN marks a seed a cell does not have, so cells of different ``n`` share a
call. The procedures, and why these (``benchmarks/calibration.py`` measures their error rates; the
unit test ``tests/test_inference.py`` keeps them calibrated):

- **Student-t interval** for a mean over seeds (of paired differences, or of one method's values):
  ``mean +- t_{0.975, n-1} * sd / sqrt(n)``. At n = 3..32 its coverage stays at 95% under normal and
  heavy-tailed (t, 3 d.o.f.) values and >= 94% under the skew and the one-seed outliers our runs show,
  where the percentile bootstrap's is 75-92% (it uses the n-denominator spread and no t quantile).
- **Sign-flip permutation test** of "the paired differences are symmetric about 0" (the methods are
  exchangeable within a seed): the two-sided p-value is the share of the 2^n sign patterns whose
  ``|sum|`` reaches the observed ``|sum|``, every pattern enumerated for n <= :data:`EXACT_MAX`,
  :data:`MONTE_CARLO` random patterns beyond (seeded; p = (1 + hits) / (1 + draws)). It is exact
  under the null, so its type-I error is at most the level whatever the distribution's shape; its
  smallest p is 2 / 2^n (0.25 at n = 3, 0.125 at n = 4): at n <= 5 no paired comparison can reach
  p < 0.05, however large the effect.
- **Holm** (1979) adjusts the p-values of a table's primary family (family-wise error);
  **Benjamini-Hochberg** (1995) gives the q-values of a map's cells (false discovery rate).
- **Percentile bootstrap** (vectorized, seeded) only for the IQM, which has no t-interval; it is
  anti-conservative at small n and is labelled descriptive where shown.
"""
from __future__ import annotations

import numpy as np

LEVEL = 0.95
EXACT_MAX = 16      # every one of the 2^n sign patterns up to here (65,536 at n = 16)
MONTE_CARLO = 20000  # random sign patterns beyond it
MIN_PAIRS = 3        # fewer pairs resolve nothing: no interval, no p-value (the tables say so)
_TIE = 1e-9          # relative tolerance: a pattern's |sum| equal to the observed one counts as reaching it
_CHUNK = 1 << 23     # sign-pattern sums held at once (64 MiB of float64)
_SPLIT = 10          # above this many pairs the exact count goes by meet in the middle


def _as_cells(values) -> np.ndarray:
    x = np.asarray(values, np.float64)
    return x.reshape(-1, 1) if x.ndim == 1 else x


def t_interval(values, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell (column; NaN = missing seed): the mean and its two-sided Student-t interval
    ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)`` (s: the sample standard deviation). Cells with fewer
    than 2 values get NaN ends (one value: its mean stays)."""
    from scipy import stats  # here, not at import: every run process imports this module, few need scipy

    x = _as_cells(values)
    n = np.sum(~np.isnan(x), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(x, axis=0) / n
        sd = np.sqrt(np.nansum((x - mean) ** 2, axis=0) / (n - 1))
        half = stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * sd / np.sqrt(n)
    half = np.where(n >= 2, half, np.nan)
    return mean, mean - half, mean + half


def _sign_patterns(n: int, seed: int) -> np.ndarray:
    """``(patterns, n)`` signs: all 2^n for n <= EXACT_MAX, else the identity and MONTE_CARLO draws."""
    if n <= EXACT_MAX:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1
        return 1.0 - 2.0 * bits
    rng = np.random.default_rng(seed)
    return np.vstack([np.ones((1, n)), rng.choice([-1.0, 1.0], size=(MONTE_CARLO, n))])


def sign_flip_p(values, seed: int = 0) -> np.ndarray:
    """Per cell: the two-sided sign-flip permutation p-value of "symmetric about 0" (module docstring);
    NaN for cells with fewer than :data:`MIN_PAIRS` values. Exact (all 2^n patterns) for n <= 16."""
    x = _as_cells(values)
    n_of = np.sum(~np.isnan(x), axis=0)
    p = np.full(x.shape[1], np.nan)
    for n in np.unique(n_of):
        if n < MIN_PAIRS:
            continue
        cols = np.flatnonzero(n_of == n)
        d = _compact(x[:, cols], int(n))                                  # (n, cells)
        if n > EXACT_MAX:
            p[cols] = _monte_carlo_p(d, seed)
        elif n > _SPLIT:
            p[cols] = _split_p(d)
        else:
            p[cols] = _enumerated_p(d)
    return p


def _enumerated_p(d: np.ndarray) -> np.ndarray:
    """Exact p of each column of ``d`` (n, cells): the share of all 2^n sign patterns whose |sum| reaches
    the observed |sum|."""
    return _share_reaching(d, _sign_patterns(d.shape[0], 0))


def _share_reaching(d: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Per column of ``d``: the share of the rows of ``signs`` whose |signed sum| reaches the observed |sum|,
    a bounded number of sums held at once."""
    out = np.empty(d.shape[1])
    step = max(1, _CHUNK // len(signs))  # (patterns, step) sums at a time
    for i in range(0, d.shape[1], step):
        part = d[:, i:i + step]
        hits = np.sum(np.abs(signs @ part) >= np.abs(part.sum(axis=0)) * (1 - _TIE), axis=0)
        out[i:i + step] = hits / len(signs)
    return out


def _split_p(d: np.ndarray) -> np.ndarray:
    """:func:`_enumerated_p` by meet in the middle: the 2^n pattern sums are a + b over the 2^h sums a
    of the first h values and the 2^(n-h) sums b of the rest; for each a, the b reaching the bar are
    counted in the sorted b by binary search (2^h log 2^(n-h) work per cell instead of 2^n n)."""
    n = d.shape[0]
    h = n // 2
    left, right = _sign_patterns(h, 0) @ d[:h], _sign_patterns(n - h, 0) @ d[h:]   # (2^h, cells), (2^(n-h), cells)
    bar = np.abs(d.sum(axis=0)) * (1 - _TIE)
    out = np.ones(d.shape[1])  # a sum of 0 is reached by every pattern
    for c in np.flatnonzero(bar > 0):
        b, a = np.sort(right[:, c]), left[:, c]
        upper = len(b) - np.searchsorted(b, bar[c] - a, side="left")   # a + b >= bar
        lower = np.searchsorted(b, -bar[c] - a, side="right")           # a + b <= -bar (disjoint: bar > 0)
        out[c] = (upper.sum() + lower.sum()) / 2.0 ** n
    return out


def _monte_carlo_p(d: np.ndarray, seed: int) -> np.ndarray:
    """Beyond EXACT_MAX pairs: (1 + hits among MONTE_CARLO random patterns) / (1 + MONTE_CARLO) (the
    identity pattern is row 0 of the draws)."""
    return _share_reaching(d, _sign_patterns(d.shape[0], seed))


def _compact(x: np.ndarray, n: int) -> np.ndarray:
    """``(n, cells)``: each column's non-missing values (every column has exactly ``n``)."""
    if not np.isnan(x).any():
        return x
    return np.stack([c[~np.isnan(c)] for c in x.T], axis=1)


def _adjusted(p, step) -> np.ndarray:
    """``step(sorted p) -> adjusted`` applied to the non-NaN entries of ``p`` in ascending order, written
    back in place, capped at 1; NaN entries stay NaN and do not count in the family."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        out[order] = np.minimum(step(p[order], len(order)), 1.0)
    return out


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values: the running maximum of (m - i) p_(i)."""
    return _adjusted(p, lambda s, m: np.maximum.accumulate((m - np.arange(m)) * s))


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg q-values (step-up): the running minimum from the top of p_(i) m / i."""
    return _adjusted(p, lambda s, m: np.minimum.accumulate((s * m / np.arange(1, m + 1))[::-1])[::-1])


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The interquartile mean along ``axis``: the mean of the middle 50% (scipy's trim_mean at 0.25,
    as rliable's ``aggregate_iqm``)."""
    from scipy import stats

    return stats.trim_mean(x, 0.25, axis=axis)


def bootstrap_interval(values, stat: str = "iqm", reps: int = 2000, seed: int = 0,
                       level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell: the statistic (``mean`` or ``iqm``) and its percentile bootstrap interval from ``reps``
    resamples of the seeds, all cells of one n in one array operation (seeded: a table is reproducible).
    Descriptive at small n (see the module docstring)."""
    x = _as_cells(values)
    f = iqm if stat == "iqm" else (lambda a, axis: np.mean(a, axis=axis))
    n_of = np.sum(~np.isnan(x), axis=0)
    point, lo, hi = (np.full(x.shape[1], np.nan) for _ in range(3))
    rng = np.random.default_rng(seed)
    for n in np.unique(n_of):
        if n < 1:
            continue
        cols = np.flatnonzero(n_of == n)
        d = _compact(x[:, cols], int(n)).T                                # (cells, n)
        point[cols] = f(d, axis=-1)
        if n < 2:
            continue
        idx = rng.integers(0, n, size=(reps, n))
        resampled = f(d[:, idx], axis=-1)                                # (cells, reps)
        q = np.quantile(resampled, [0.5 - level / 2, 0.5 + level / 2], axis=-1)
        lo[cols], hi[cols] = q[0], q[1]
    return point, lo, hi
