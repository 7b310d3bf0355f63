"""Multivariate drift: a domain classifier learns to tell reference rows from current rows.

If no classifier can tell the two windows apart better than chance, they are one
distribution as far as that classifier can see; if it can, its held-out AUC says
how far apart they are and its permutation importances say which features the
difference lives in. This is the classifier two-sample test of Lopez-Paz &
Oquab (2017), which Rabanser et al. (2019) found to be the most useful
multivariate shift detector for tabular data when one also wants to know *where*
the shift is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from scipy.stats import mannwhitneyu
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

__all__ = ["DomainClassifierTest", "MultivariateResult"]


@dataclass(frozen=True)
class MultivariateResult:
    """The verdict of a multivariate two-sample test on two tables.

    `auc` is the classifier's held-out AUC (0.5: it cannot tell the windows apart;
    1.0: it always can); `drifted` is `p_value < alpha`. `feature_importance` is
    ``((feature, importance), ...)`` sorted by importance, descending: the fall in
    held-out AUC when that feature's values are shuffled, so about 0 (or slightly
    negative) means the feature does not help tell the windows apart. `auc` and
    `p_value` are NaN, `drifted` False and `feature_importance` empty when there
    was nothing to compare (`note` says why). `n_reference` and `n_current` are
    the rows the test used.
    """

    method: str
    auc: float
    p_value: float
    alpha: float
    drifted: bool
    feature_importance: tuple[tuple[str, float], ...]
    n_reference: int
    n_current: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document: NaN becomes None, importances a list of ``[feature, value]``."""
        return {
            "method": self.method,
            "auc": _none_if_nan(self.auc),
            "p_value": _none_if_nan(self.p_value),
            "alpha": self.alpha,
            "drifted": self.drifted,
            "feature_importance": [[name, value] for name, value in self.feature_importance],
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> MultivariateResult:
        """The inverse of `to_dict`."""
        return cls(
            method=str(document["method"]),
            auc=_nan_if_none(document["auc"]),
            p_value=_nan_if_none(document["p_value"]),
            alpha=float(document["alpha"]),
            drifted=bool(document["drifted"]),
            feature_importance=tuple((str(name), float(value)) for name, value in document["feature_importance"]),
            n_reference=int(document["n_reference"]),
            n_current=int(document["n_current"]),
            note=str(document.get("note", "")),
        )


class DomainClassifierTest:
    """Classifier two-sample test with feature attribution (Lopez-Paz & Oquab, 2017).

    Rows of the reference window are labelled 0 and rows of the current window 1.
    A seeded, stratified split holds out ``test_fraction`` of each window; a
    small `HistGradientBoostingClassifier` learns on the rest and scores the
    held-out rows. `auc` is the AUC of those held-out scores.

    **Significance.** One-sided Mann-Whitney U test of the held-out scores of
    current rows against those of reference rows (`scipy.stats.mannwhitneyu`,
    ``alternative="greater"``: normal approximation with tie-corrected variance
    and continuity correction); only an AUC above 0.5 is
    evidence of drift. It is exact in the sense that matters: under H0 (both
    windows from one distribution) the held-out rows are i.i.d., independent of
    the fitted model and of their labels, so their scores follow the
    distribution-free null of U whatever the model learnt. This is the held-out
    design of Lopez-Paz & Oquab (2017). Out-of-fold scores from K-fold
    cross-fitting are not: every pair of folds trains on the other, so the
    folds' statistics are positively correlated under H0. Summing the folds' U
    (a van Elteren stratified rank-sum test, which never compares scores of
    different fold models) raised 19 false alarms in 200 seeds at alpha=0.05
    (1,000 vs 1,000 rows, 5 folds): about twice alpha. A permutation test with
    refits would fix that, at one fit per permutation: hundreds of times the
    budget. Splitting costs power only where it is cheap: at 10k vs 10k rows
    the held-out half still detects a 0.2 sigma shift in 3 of 20 features in
    every seed (``benchmarks/multivariate.py``). Rabanser et al. (2019)
    "Failing loudly" compare this detector with MMD and univariate tests.

    **Attribution.** Permutation importance on the held-out rows (Breiman,
    2001): the fall in held-out AUC when one feature is shuffled among them.

    **Input.** Two 2-D numpy arrays, pandas DataFrames or pyarrow Tables of
    numeric (or boolean) columns. Tables are matched by column name (the current
    table may list them in another order); arrays by position, named ``x0``,
    ``x1``, ... unless the other side is a table. Categorical features must be
    encoded first: integer (ordinal) codes suit the tree model best and keep one
    importance per feature; one-hot columns work too but split the importance
    over the dummies. Text columns are refused. NaN is allowed and means
    missing: the gradient-boosted trees route missing values natively, so a
    change in how often a feature is missing is itself detected. A column
    missing in every row of both windows carries no information: it is held
    constant (importance 0) and named in `note`. Infinite values are refused.
    A constant column never helps the classifier and gets an importance of 0.

    Parameters
    ----------
    alpha
        Significance level: drift when the p-value is below it.
    test_fraction
        Share of each window held out to test the classifier; the rest trains it.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf
        The gradient-boosting model: many small trees (4 leaves: two-feature
        interactions, so a change of correlation is seen) learning slowly.
        Against 15-leaf trees at a rate of 0.1 over 50 iterations, it raised the
        power on a 0.2 sigma shift in 3 of 20 features at 1,000 vs 1,000 rows
        from 0.65 to 0.90 (40 seeds), in less time.
    min_rows
        Fewest rows per window. With fewer, the result says so in `note`, with a
        NaN AUC and p-value and ``drifted=False``: a monitor must not crash, nor
        alarm, on a quiet window. At least 10.
    max_rows
        Most rows per window: a larger window is subsampled (seeded) to this
        many rows, so the cost stays bounded. None: no limit.
    n_threads
        OpenMP threads for the classifier while the test runs; None: all cores.
        One by default because a monitor shares its machine: an OpenMP parallel
        region waits for its slowest thread, and a thread descheduled by another
        process costs a scheduler time slice per region. On a busy 2-core
        machine (load 4), 10k vs 10k rows took 0.45 to 0.84 s on one thread
        and 3.6 to 9.7 s on two.
    seed
        Seed of the instance's random generator (the split, subsampling,
        shuffles). Two instances with the same seed give the same sequence of
        results.

    References
    ----------
    D. Lopez-Paz and M. Oquab. Revisiting classifier two-sample tests. ICLR, 2017.
    S. Rabanser, S. Günnemann and Z. Lipton. Failing loudly: an empirical study of
    methods for detecting dataset shift. NeurIPS, 2019.
    P. H. van Elteren. On the combination of independent two-sample tests of
    Wilcoxon. Bull. Int. Stat. Inst., 1960.
    L. Breiman. Random forests. Machine Learning 45, 2001.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> reference = rng.normal(size=(2000, 5))
    >>> current = rng.normal(size=(2000, 5))
    >>> current[:, 3] += 0.5
    >>> result = DomainClassifierTest(seed=0).test(reference, current)
    >>> result.drifted, result.feature_importance[0][0]
    (True, 'x3')
    >>> DomainClassifierTest(seed=0).test(reference, rng.normal(size=(2000, 5))).drifted
    False
    """

    method = "domain_classifier"

    def __init__(
        self,
        alpha: float = 0.05,
        test_fraction: float = 0.5,
        max_iter: int = 100,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 4,
        min_samples_leaf: int = 20,
        min_rows: int = 50,
        max_rows: int | None = 100_000,
        n_threads: int | None = 1,
        seed: int | None = None,
    ) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"The 'alpha' parameter of DomainClassifierTest must be in (0, 1). Got {alpha!r} instead.")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(
                "The 'test_fraction' parameter of DomainClassifierTest must be in (0, 1). "
                f"Got {test_fraction!r} instead."
            )
        _check_int("max_iter", max_iter, 1)
        _check_int("max_leaf_nodes", max_leaf_nodes, 2)
        _check_int("min_samples_leaf", min_samples_leaf, 1)
        _check_int("min_rows", min_rows, 10)
        if max_rows is not None:
            _check_int("max_rows", max_rows, min_rows)
        if n_threads is not None:
            _check_int("n_threads", n_threads, 1)
        if not learning_rate > 0.0:
            raise ValueError(
                f"The 'learning_rate' parameter of DomainClassifierTest must be > 0. Got {learning_rate!r} instead."
            )
        self.alpha = alpha
        self.test_fraction = test_fraction
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.min_rows = min_rows
        self.max_rows = max_rows
        self.n_threads = n_threads
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def test(self, reference: Any, current: Any) -> MultivariateResult:
        """Test whether `current` comes from the distribution of `reference`.

        Raises ValueError when the inputs cannot be compared: not 2-D, no
        columns, different columns (named), non-numeric columns, infinite values.
        """
        names, ref, cur = _as_matrices(reference, current)
        notes = []
        if min(len(ref), len(cur)) < self.min_rows:
            return MultivariateResult(
                method=self.method,
                auc=math.nan,
                p_value=math.nan,
                alpha=self.alpha,
                drifted=False,
                feature_importance=(),
                n_reference=len(ref),
                n_current=len(cur),
                note=(
                    f"too few rows: {len(ref)} reference and {len(cur)} current, "
                    f"at least {self.min_rows} needed in each"
                ),
            )
        if self.max_rows is not None:
            for label, rows in (("reference", ref), ("current", cur)):
                if len(rows) > self.max_rows:
                    notes.append(f"{label} subsampled from {len(rows)} to {self.max_rows} rows")
            ref = self._subsample(ref)
            cur = self._subsample(cur)

        features = np.concatenate([ref, cur])
        labels = np.concatenate([np.zeros(len(ref), dtype=np.int8), np.ones(len(cur), dtype=np.int8)])
        all_missing = np.isnan(features).all(axis=0)
        if all_missing.any():  # no information, and scikit-learn 1.9's binning fails on a column without values
            features[:, all_missing] = 0.0
            notes.append(f"all values missing in both windows: {[names[j] for j in np.flatnonzero(all_missing)]}")
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            u, p_value, pairs, auc_drop, alike = self._fit_and_score(features, labels)

        auc = u / pairs
        if alike:  # no variance: scipy's normal approximation says p = 1, and it is right, but say why
            p_value = 1.0
            notes.append("the classifier scored every row alike (constant features?)")
        importance = auc_drop / pairs
        order = sorted(range(len(names)), key=lambda j: (-importance[j], j))
        return MultivariateResult(
            method=self.method,
            auc=float(auc),
            p_value=p_value,
            alpha=self.alpha,
            drifted=bool(p_value < self.alpha),
            feature_importance=tuple((names[j], float(importance[j])) for j in order),
            n_reference=len(ref),
            n_current=len(cur),
            note="; ".join(notes),
        )

    def _fit_and_score(self, features: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, np.ndarray, bool]:
        """On the held-out rows: U of the current rows, its one-sided p-value, pairs, pairs x the AUC drop per
        feature, and whether every held-out row got the same score."""
        train, held = self._split(labels)
        model = self._classifier().fit(features[train], labels[train])
        x_held, y_held = features[held], labels[held]
        current = y_held == 1
        scores = _score(model, x_held)
        test = _mann_whitney(scores, current)
        auc_drop = np.zeros(features.shape[1])
        shuffled = x_held.copy()
        for j in range(features.shape[1]):
            shuffled[:, j] = self._rng.permutation(x_held[:, j])
            auc_drop[j] = test.statistic - _mann_whitney(_score(model, shuffled), current).statistic
            shuffled[:, j] = x_held[:, j]
        pairs = float(current.sum() * (~current).sum())
        return float(test.statistic), float(test.pvalue), pairs, auc_drop, bool(np.ptp(scores) == 0.0)

    def current_probabilities(self, reference: Any, current: Any) -> np.ndarray:
        """How likely each current row is to come from the current window rather than the reference one.

        Cross-fitted, so no row is scored by a model that saw it: the current
        rows are split in two halves, and each half is scored by a classifier
        trained on the other half against the reference (each side subsampled to
        `max_rows`). With balanced windows 0.5 means "looks like the reference
        too"; near 1 means "only seen since". Curation uses it to favour inputs
        from where the data drifted.

        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> reference = rng.normal(size=(2000, 2))
        >>> current = np.concatenate([rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) + [4.0, 0.0]])
        >>> p = DomainClassifierTest(seed=0).current_probabilities(reference, current)
        >>> bool(p[1000:].mean() > 0.9 > 0.6 > p[:1000].mean())
        True
        """
        _, ref, cur = _as_matrices(reference, current)
        if min(len(ref), len(cur)) < self.min_rows:
            raise ValueError(
                f"too few rows to learn where the windows differ: {len(ref)} reference and {len(cur)} current, "
                f"at least {self.min_rows} needed in each"
            )
        halves = np.array_split(self._rng.permutation(len(cur)), 2)
        probabilities = np.empty(len(cur))
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            for fit_rows, scored_rows in ((halves[0], halves[1]), (halves[1], halves[0])):
                fit_ref, fit_cur = self._subsample(ref), self._subsample(cur[fit_rows])
                features = np.concatenate([fit_ref, fit_cur])
                labels = np.concatenate([np.zeros(len(fit_ref), dtype=np.int8), np.ones(len(fit_cur), dtype=np.int8)])
                model = self._classifier().fit(features, labels)
                # Log-odds of the fit's class balance, removed so that 0.5 means "either window" whatever the sizes
                # (sample weights would do it too, but make scikit-learn 1.9's binning several times slower).
                prior = math.log(len(fit_cur) / len(fit_ref))
                probabilities[scored_rows] = expit(model.decision_function(cur[scored_rows]) - prior)
        return probabilities

    def _classifier(self) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            early_stopping=False,
            random_state=self._draw_seed(),
        )

    def _split(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Train and held-out row indices, holding out `test_fraction` of each window (at least one row each side)."""
        train, held = [], []
        for label in (0, 1):
            rows = self._rng.permutation(np.flatnonzero(labels == label))
            n_held = min(max(round(self.test_fraction * len(rows)), 1), len(rows) - 1)
            held.append(rows[:n_held])
            train.append(rows[n_held:])
        return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))

    def _draw_seed(self) -> int:
        return int(self._rng.integers(2**31 - 1))

    def _subsample(self, rows: np.ndarray) -> np.ndarray:
        if self.max_rows is None or len(rows) <= self.max_rows:
            return rows
        return rows[np.sort(self._rng.choice(len(rows), size=self.max_rows, replace=False))]


def _score(model: HistGradientBoostingClassifier, rows: np.ndarray) -> np.ndarray:
    """The model's log-odds that a row is current: monotone in its probability, and cheaper."""
    return model.decision_function(rows)


def _mann_whitney(scores: np.ndarray, current: np.ndarray):
    """One-sided Mann-Whitney U test that the current rows score higher: U of the current rows and its p-value.

    Normal approximation with tie-corrected variance and continuity correction.
    """
    return mannwhitneyu(scores[current], scores[~current], alternative="greater", method="asymptotic", use_continuity=True)


def _as_matrices(reference: Any, current: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both inputs as float64 matrices with the same columns in the same order, and the column names."""
    ref_names, ref = _table(reference, "reference")
    cur_names, cur = _table(current, "current")
    if ref_names is not None and cur_names is not None:
        if set(ref_names) != set(cur_names):
            missing = [name for name in ref_names if name not in set(cur_names)]
            extra = [name for name in cur_names if name not in set(ref_names)]
            raise ValueError(
                "reference and current must have the same columns: "
                f"missing from current: {missing}; not in reference: {extra}"
            )
        if cur_names != ref_names:
            position = {name: i for i, name in enumerate(cur_names)}
            cur = cur[:, [position[name] for name in ref_names]]
        names = ref_names
    else:
        if ref.shape[1] != cur.shape[1]:
            raise ValueError(
                f"reference and current must have the same number of columns: "
                f"reference has {ref.shape[1]}, current has {cur.shape[1]}"
            )
        names = ref_names or cur_names or [f"x{j}" for j in range(ref.shape[1])]
    if not names:
        raise ValueError("reference and current have no columns: at least one feature is needed")
    for label, rows in (("reference", ref), ("current", cur)):
        infinite = np.isinf(rows).any(axis=0)
        if infinite.any():
            raise ValueError(
                f"{label} has infinite values in columns {[names[j] for j in np.flatnonzero(infinite)]}; "
                "use NaN for missing values"
            )
    return names, ref, cur


def _table(data: Any, label: str) -> tuple[list[str] | None, np.ndarray]:
    """Column names (None for a bare array) and a float64 matrix of a numpy array, DataFrame or Arrow table."""
    if hasattr(data, "column_names") and hasattr(data, "column"):  # pyarrow.Table
        names = [str(name) for name in data.column_names]
        columns = [data.column(i).to_numpy(zero_copy_only=False) for i in range(data.num_columns)]
    elif hasattr(data, "columns") and hasattr(data, "to_numpy") and hasattr(data, "iloc"):  # pandas.DataFrame
        names = [str(name) for name in data.columns]
        columns = [_pandas_column(data.iloc[:, i]) for i in range(data.shape[1])]
    else:
        matrix = np.asarray(data)
        if matrix.ndim != 2:
            raise ValueError(
                f"{label} must be 2-D (rows x features), got an array of shape {matrix.shape}; "
                "use reshape(-1, 1) for a single feature"
            )
        names = None
        columns = [matrix[:, j] for j in range(matrix.shape[1])]
    if len(set(names or ())) != len(names or ()):
        raise ValueError(f"{label} has duplicate column names: {names}")
    converted = []
    for j, column in enumerate(columns):
        try:
            converted.append(_numeric(column))
        except (TypeError, ValueError):
            name = names[j] if names is not None else f"x{j}"
            raise ValueError(
                f"{label} column {name!r} is not numeric (dtype {column.dtype}); "
                "encode categorical features first (integer codes, or one-hot columns)"
            ) from None
    matrix = np.column_stack(converted) if converted else np.empty((0, 0))
    return names, matrix


def _pandas_column(series: Any) -> np.ndarray:
    """A pandas column as numpy; nullable numeric dtypes (Int64, Float64, boolean) with NA become float with NaN."""
    if series.dtype.kind in "biuf":
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy()


def _numeric(column: np.ndarray) -> np.ndarray:
    """A float64 copy of a numeric or boolean column; None (a null in an object column) becomes NaN."""
    if column.dtype.kind in "biuf":
        return column.astype(np.float64)
    if column.dtype.kind == "O":
        values = [math.nan if value is None else value for value in column]
        if all(isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)) for value in values):
            return np.asarray(values, dtype=np.float64)
    raise TypeError(column.dtype)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(
            f"The {name!r} parameter of DomainClassifierTest must be an int >= {minimum}. Got {value!r} instead."
        )


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)
