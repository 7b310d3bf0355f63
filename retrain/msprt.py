"""An always-valid one-sided test on paired outcomes: a mixture sequential probability ratio test.

Each labelled request gives a pair (was the baseline right?, was the candidate right?) and so
a difference D = candidate_right - baseline_right in {-1, 0, +1}. `MixtureSPRT(bound)` tests

    H0: E[D] <= bound      against      H1: E[D] > bound

and may be looked at after every label, or at any time, as often as one likes: under H0 the
probability that it *ever* rejects is at most `alpha`. A fixed-n test (McNemar's) checked after
every label has no such guarantee; its false rejection rate grows with every look.

How. For a bet λ in [0, 1/(1 + bound)), the wealth W_n(λ) = Π_i (1 + λ (D_i - bound)) is a
nonnegative supermartingale under H0 (each factor has mean 1 + λ (E[D] - bound) <= 1), so is any
mixture W_n = ∫ W_n(λ) π(dλ), and Ville's inequality gives P(sup_n W_n >= 1/α) <= α. W_n is the
e-value; the test rejects once log W_n >= log(1/α).

With bound = 0 a concordant pair (both right, or both wrong) leaves every W_n(λ) unchanged, and
a discordant one multiplies it by 1 ± λ = 2p or 2(1 - p) with λ = 2p - 1: the likelihood ratio
of Bernoulli(p) against Bernoulli(1/2) on the discordant pairs. The mixture is then exactly the
mixture SPRT on the discordant pairs (Robbins 1970; Johari, Koomen, Pekelis & Walsh 2017), the
sequential form of McNemar's test. With bound != 0 (a margin) the same construction is the
betting test for the mean of a bounded variable (Waudby-Smith & Ramdas 2024), which keeps the
margin on accuracy exact without knowing how often the two models disagree.

The mixing distribution π is a half-normal on λ with scale `prior_scale` (Johari et al.'s
normal mixture, restricted to the alternative's side), discretised on `grid` points: a finite
mixture of supermartingales whose weights sum to one is one, so the discretisation costs no
validity. W_n depends only on the counts of +1, 0 and -1, so a gate can recompute it from the
store at every check, in any order the labels came.

- H. Robbins (1970). Statistical methods related to the law of the iterated logarithm. Ann. Math. Statist. 41(5).
- R. Johari, P. Koomen, L. Pekelis, D. Walsh (2017). Peeking at A/B tests: why it matters, and what to do
  about it. KDD '17 (and Operations Research 70(3), 2022: Always valid inference).
- I. Waudby-Smith, A. Ramdas (2024). Estimating means of bounded random variables by betting. JRSS B 86(1).

>>> test = MixtureSPRT(alpha=0.05)
>>> test.test(PairCounts(wins=30, ties=300, losses=10)).rejected
True
>>> test.test(PairCounts(wins=12, ties=300, losses=10)).rejected
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MixtureSPRT", "PairCounts", "TestResult"]


@dataclass(frozen=True)
class PairCounts:
    """Paired outcomes: `wins` (candidate right, baseline wrong), `ties` (both alike), `losses` (the reverse)."""

    wins: int
    ties: int
    losses: int

    def __post_init__(self) -> None:
        for name in ("wins", "ties", "losses"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"'{name}' must be a count (an integer >= 0), got {value!r}")

    @property
    def pairs(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def difference(self) -> float:
        """The candidate's accuracy minus the baseline's, on these pairs (0 when there are none)."""
        return (self.wins - self.losses) / self.pairs if self.pairs else 0.0

    def flipped(self) -> PairCounts:
        """The same pairs with the two roles swapped (D becomes -D)."""
        return PairCounts(self.losses, self.ties, self.wins)

    @classmethod
    def from_outcomes(cls, baseline_right, candidate_right) -> PairCounts:
        baseline, candidate = np.asarray(baseline_right, dtype=bool), np.asarray(candidate_right, dtype=bool)
        if baseline.shape != candidate.shape:
            raise ValueError(f"outcomes of different lengths: {baseline.shape} and {candidate.shape}")
        wins = int(np.sum(candidate & ~baseline))
        losses = int(np.sum(baseline & ~candidate))
        return cls(wins, len(baseline) - wins - losses, losses)


@dataclass(frozen=True)
class TestResult:
    """The e-value (as its log), the threshold log(1/alpha), and whether H0 is rejected."""

    log_evalue: float
    log_threshold: float
    rejected: bool

    __test__ = False  # not a pytest class


class MixtureSPRT:
    """Always-valid test of H0: E[candidate_right - baseline_right] <= bound. See the module docstring."""

    __test__ = False

    def __init__(self, alpha: float = 0.05, bound: float = 0.0, prior_scale: float = 0.3, grid: int = 100) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"'alpha' must be between 0 and 1 (exclusive), got {alpha!r}")
        if not -1 < bound < 1:
            raise ValueError(f"'bound' must be between -1 and 1 (exclusive), got {bound!r}")
        if not prior_scale > 0:
            raise ValueError(f"'prior_scale' must be positive, got {prior_scale!r}")
        if not isinstance(grid, int) or grid < 2:
            raise ValueError(f"'grid' must be an integer of at least 2, got {grid!r}")
        self.alpha = alpha
        self.bound = bound
        self.prior_scale = prior_scale
        self.grid = grid
        # Bets strictly inside (0, 1/(1 + bound)): every factor 1 + λ (D - bound) stays positive.
        self.lambdas_ = np.linspace(0, 1 / (1 + bound), grid + 2)[1:-1]
        weights = np.exp(-0.5 * (self.lambdas_ / prior_scale) ** 2)
        self.log_weights_ = np.log(weights / weights.sum())
        self.log_factors_ = np.stack([
            np.log1p(self.lambdas_ * (1 - bound)),   # D = +1
            np.log1p(-self.lambdas_ * bound),         # D = 0
            np.log1p(-self.lambdas_ * (1 + bound)),  # D = -1
        ])

    @property
    def log_threshold(self) -> float:
        return math.log(1 / self.alpha)

    def log_evalue(self, counts: PairCounts) -> float:
        """log W_n for these counts (0 when there are no pairs: W_0 = 1)."""
        terms = self.log_weights_ + np.array([counts.wins, counts.ties, counts.losses]) @ self.log_factors_
        return float(_logsumexp(terms))

    def test(self, counts: PairCounts) -> TestResult:
        log_evalue = self.log_evalue(counts)
        return TestResult(log_evalue, self.log_threshold, log_evalue >= self.log_threshold)

    def log_evalue_path(self, differences) -> np.ndarray:
        """log W_n after each of a sequence of differences D_1, D_2, ... in {-1, 0, 1} (for simulations)."""
        d = np.asarray(differences)
        counts = np.stack([np.cumsum(d == 1), np.cumsum(d == 0), np.cumsum(d == -1)], axis=1)
        return _logsumexp(self.log_weights_ + counts @ self.log_factors_, axis=1)


def _logsumexp(values: np.ndarray, axis: int = -1) -> np.ndarray:
    top = np.max(values, axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(values - top), axis=axis))
