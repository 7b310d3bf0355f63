"""Window drift statistics: one small class per method, an explicit registry.

Each class takes its decision rule in the constructor (a calibrated test at
`alpha`, the default, or Evidently's fixed `threshold` on the score) and
scores one column of a window against that column's stored reference profile:
`STATISTICS["ks"]().score(profile.features["age"], window["age"]) -> DriftResult`.

>>> sorted(STATISTICS)
['chisquare', 'chisquare_evidently', 'jensenshannon', 'ks', 'psi', 'wasserstein', 'z']
>>> get_statistic("kolmogorov")
Traceback (most recent call last):
...
ValueError: Unknown statistic 'kolmogorov'. Valid values are: ['ks', 'wasserstein', 'psi', 'jensenshannon', 'chisquare', 'chisquare_evidently', 'z']
"""

from __future__ import annotations

from driftloop.drift.stats._base import Statistic
from driftloop.drift.stats.chisquare import ChiSquare
from driftloop.drift.stats.chisquare_evidently import ChiSquareEvidently
from driftloop.drift.stats.jensenshannon import JensenShannon
from driftloop.drift.stats.ks import KS
from driftloop.drift.stats.psi import PSI
from driftloop.drift.stats.wasserstein import Wasserstein
from driftloop.drift.stats.z import Z

STATISTICS: dict[str, type[Statistic]] = {
    "ks": KS,
    "wasserstein": Wasserstein,
    "psi": PSI,
    "jensenshannon": JensenShannon,
    "chisquare": ChiSquare,
    "chisquare_evidently": ChiSquareEvidently,
    "z": Z,
}


def get_statistic(name: str, threshold: float | None = None, alpha: float | None = None) -> Statistic:
    """The statistic registered as `name`: a calibrated test at `alpha` (default 0.05), or a fixed `threshold`."""
    if name not in STATISTICS:
        raise ValueError(f"Unknown statistic {name!r}. Valid values are: {list(STATISTICS)}")
    return STATISTICS[name](threshold=threshold, alpha=alpha)


__all__ = [
    "STATISTICS", "Statistic", "get_statistic",
    "KS", "Wasserstein", "PSI", "JensenShannon", "ChiSquare", "ChiSquareEvidently", "Z",
]
