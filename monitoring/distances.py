"""Distances between a reference distribution and a current one: PSI, Jensen-Shannon and normalised Wasserstein.

Both sides are :class:`Distribution`s: weighted samples (distinct values and how often each was seen), which is
what a ``GROUP BY value`` in ClickHouse returns, so a window of any length costs one row per distinct value.

- **PSI** (population stability index): ``sum((c - r) * ln(c / r))`` over bins, each share floored at
  :data:`SHARE_FLOOR` so an empty bin does not make it infinite. 0 when equal; the usual reading is < 0.1 stable,
  0.1 to 0.25 a moderate shift, > 0.25 a major one.
- **Jensen-Shannon distance** (``scipy.spatial.distance.jensenshannon``, base 2): the square root of the JS
  divergence of the binned shares, from 0 (equal) to 1 (no overlap). Symmetric and bounded, so it stays meaningful
  when one side has bins the other lacks.
- **Normalised Wasserstein** (``scipy.stats.wasserstein_distance`` of the weighted values, divided by the
  reference's standard deviation): how far, in reference standard deviations, the mass has to move. It needs no
  bins. The divisor is at least the signal's ``min_scale``, so a reference that hardly varies (a quiet camera that
  always sees one person) does not turn a one-detection change into an infinite score.

PSI and JS compare shares of bins. The bins are the reference's quantiles (deciles by default; fewer where the
reference has fewer distinct values, as counts of detections often do), so every bin holds about the same share of
the reference and none is nearly empty: an equal-width grid would leave bins with a handful of frames whose
sampling noise alone would push PSI over 0.1. Two more bins hold what lies below and above everything the reference
saw.

Categorical signals (the class mix of the boxes) are :class:`Categories`: names and how often each was seen. PSI
and Jensen-Shannon apply to them directly, one bin per category (the union of both sides' categories, so a class
the reference never saw has a bin of its own where the reference's share is 0). The normalised Wasserstein does
not apply (categories have no order and no distance between them): :func:`category_distance` refuses it, and
:data:`CATEGORICAL_MEASURES` names the measures that do apply.

The p-value tests (KS, chi-squared) are deliberately absent: at the volumes a camera produces (thousands of frames
per window) they call every harmless difference significant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

Measure = Literal["psi", "jensen_shannon", "wasserstein"]
MEASURES: tuple[Measure, ...] = ("psi", "jensen_shannon", "wasserstein")
CATEGORICAL_MEASURES: tuple[Measure, ...] = ("psi", "jensen_shannon")
"""The measures defined between two :class:`Categories` (no Wasserstein: categories have no order)."""

SHARE_FLOOR = 1e-4
"""Smallest share a bin is given in PSI (an empty bin would make ``ln(c / r)`` infinite)."""

DEFAULT_BINS = 10


@dataclass(frozen=True)
class Distribution:
    """A weighted sample: ``values`` (ascending, distinct) seen ``counts`` times each."""

    values: np.ndarray
    counts: np.ndarray

    @staticmethod
    def of(values: np.ndarray | list[float], counts: np.ndarray | list[float] | None = None) -> "Distribution":
        """From raw observations (``counts`` None) or from (value, count) pairs in any order; zero counts dropped."""
        values = np.asarray(values, np.float64).reshape(-1)
        weights = np.ones_like(values) if counts is None else np.asarray(counts, np.float64).reshape(-1)
        if len(weights) != len(values):
            raise ValueError(f"{len(values)} values but {len(weights)} counts")
        if np.any(weights < 0) or not np.all(np.isfinite(values)):
            raise ValueError("counts must be >= 0 and values finite")
        unique, inverse = np.unique(values, return_inverse=True)
        summed = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(unique))
        kept = summed > 0
        return Distribution(unique[kept], summed[kept])

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def mean(self) -> float:
        return float(np.average(self.values, weights=self.counts)) if self.total else float("nan")

    def std(self) -> float:
        if not self.total:
            return float("nan")
        mean = self.mean()
        return float(np.sqrt(np.average((self.values - mean) ** 2, weights=self.counts)))

    def share_at_or_below(self, value: float) -> float:
        """Share of the sample at or below ``value`` (e.g. ``share_at_or_below(0)``: frames without detections)."""
        return float(self.counts[self.values <= value].sum() / self.total) if self.total else float("nan")


@dataclass(frozen=True)
class Categories:
    """A categorical sample: ``names`` (sorted, distinct) seen ``counts`` times each."""

    names: tuple[str, ...]
    counts: np.ndarray

    @staticmethod
    def of(names: list[str] | tuple[str, ...], counts: np.ndarray | list[float] | None = None) -> "Categories":
        """From raw observations (``counts`` None) or from (name, count) pairs in any order; zero counts dropped."""
        weights = np.ones(len(names)) if counts is None else np.asarray(counts, np.float64).reshape(-1)
        if len(weights) != len(names):
            raise ValueError(f"{len(names)} names but {len(weights)} counts")
        if np.any(weights < 0):
            raise ValueError("counts must be >= 0")
        summed: dict[str, float] = {}
        for name, weight in zip(names, weights.tolist()):
            summed[str(name)] = summed.get(str(name), 0.0) + weight
        kept = sorted(name for name, weight in summed.items() if weight > 0)
        return Categories(tuple(kept), np.array([summed[name] for name in kept], np.float64))

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def share(self, name: str) -> float:
        """Share of the sample that is ``name`` (NaN when empty)."""
        if not self.total:
            return float("nan")
        return float(self.counts[self.names.index(name)] / self.total) if name in self.names else 0.0

    def most_common(self) -> str:
        """The most frequent name (ties: the first in sorted order; '' when empty)."""
        return self.names[int(np.argmax(self.counts))] if self.total else ""

    def shares_over(self, names: tuple[str, ...]) -> np.ndarray:
        """Share of the sample in each of ``names`` (0 for a name it lacks)."""
        index = {name: i for i, name in enumerate(self.names)}
        return np.array([self.counts[index[n]] if n in index else 0.0 for n in names]) / self.total


def category_distance(measure: Measure, reference: Categories, current: Categories) -> float:
    """``measure`` (one of :data:`CATEGORICAL_MEASURES`) between two non-empty categorical samples, one bin per
    category of either side (PSI floors each share at :data:`SHARE_FLOOR`, as for numeric bins)."""
    if reference.total <= 0 or current.total <= 0:
        raise ValueError("both samples need at least one observation")
    names = tuple(sorted(set(reference.names) | set(current.names)))
    r, c = reference.shares_over(names), current.shares_over(names)
    if measure == "psi":
        r, c = np.maximum(r, SHARE_FLOOR), np.maximum(c, SHARE_FLOOR)
        return float(np.sum((c - r) * np.log(c / r)))
    if measure == "jensen_shannon":
        return float(np.nan_to_num(jensenshannon(r, c, base=2)))
    raise ValueError(f"{measure!r} is not defined between categories; one of {CATEGORICAL_MEASURES}")


def quantile_edges(reference: Distribution, bins: int = DEFAULT_BINS) -> np.ndarray:
    """The bin edges: just below the reference's smallest value, its 1/bins, ..., (bins-1)/bins weighted
    quantiles (without repeats) and its largest value.

    Bin i is (edge[i-1], edge[i]], the first and last open-ended: so every value of either side falls in one bin,
    and values the reference never reached (below its minimum, above its maximum: a blank camera's empty frames, a
    model that suddenly sees crowds) have bins of their own, where the reference has no share at all.
    """
    if reference.total <= 0:
        return np.zeros(0)
    cumulative = np.cumsum(reference.counts) / reference.total
    targets = np.arange(1, bins) / bins
    # the smallest value whose cumulative share reaches each target
    quantiles = reference.values[np.minimum(np.searchsorted(cumulative, targets - 1e-12), len(reference.values) - 1)]
    lowest, highest = reference.values[0], reference.values[-1]
    inner = quantiles[(quantiles >= lowest) & (quantiles < highest)]
    return np.unique(np.concatenate([[np.nextafter(lowest, -np.inf)], inner, [highest]]))


def binned_shares(distribution: Distribution, edges: np.ndarray) -> np.ndarray:
    """Share of ``distribution`` in each of the ``len(edges) + 1`` bins that ``edges`` bound."""
    index = np.searchsorted(edges, distribution.values, side="left")
    counts = np.bincount(index, weights=distribution.counts, minlength=len(edges) + 1)
    return counts / distribution.total


def psi(reference: Distribution, current: Distribution, bins: int = DEFAULT_BINS) -> float:
    edges = quantile_edges(reference, bins)
    r = np.maximum(binned_shares(reference, edges), SHARE_FLOOR)
    c = np.maximum(binned_shares(current, edges), SHARE_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def jensen_shannon(reference: Distribution, current: Distribution, bins: int = DEFAULT_BINS) -> float:
    edges = quantile_edges(reference, bins)
    value = jensenshannon(binned_shares(reference, edges), binned_shares(current, edges), base=2)
    return float(np.nan_to_num(value))  # two identical one-bin distributions give 0/0 in some scipy versions


def wasserstein(reference: Distribution, current: Distribution, min_scale: float) -> float:
    """Wasserstein-1 distance over the reference's standard deviation (at least ``min_scale``)."""
    distance = wasserstein_distance(reference.values, current.values, reference.counts, current.counts)
    return float(distance / max(reference.std(), min_scale))


def distance(measure: Measure, reference: Distribution, current: Distribution, min_scale: float,
             bins: int = DEFAULT_BINS) -> float:
    """``measure`` between two non-empty distributions."""
    if reference.total <= 0 or current.total <= 0:
        raise ValueError("both distributions need at least one observation")
    if measure == "psi":
        return psi(reference, current, bins)
    if measure == "jensen_shannon":
        return jensen_shannon(reference, current, bins)
    if measure == "wasserstein":
        return wasserstein(reference, current, min_scale)
    raise ValueError(f"unknown measure {measure!r}; one of {MEASURES}")
