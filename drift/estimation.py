"""Confidence-based performance estimation: a classifier's accuracy before its labels come.

The method is NannyML's CBPE (confidence-based performance estimation,
https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html):
calibrate the model's class probabilities on a labelled reference window, then
read the expected confusion matrix of an unlabelled window off its calibrated
probabilities. The expected accuracy is the mean calibrated probability of the
predicted class; for a binary model the expected ROC AUC and F1 follow from the
same expected counts.

It rests on one assumption, and fails without it: **no concept drift**. The
relation between inputs and labels, P(y|x), must be the one seen at reference,
so that probabilities calibrated there are still calibrated now. It then follows
a covariate shift (P(x) moves: more hard cases, a segment that grows) within
the region the model has seen. It cannot see a concept drift (the same inputs
now mean other labels): the probabilities do not change, so neither does the
estimate. Only labels (`driftloop_drift_accuracy`, the sequential detectors) see
that. It also trusts the model in unseen regions of the input space, where its
probabilities were never checked (docs/estimation.md).

The estimator is fitted once on the reference and then estimates any number of
windows, each at the cost of that window alone. The band around each estimate,
`value ± sigmas · sqrt(sampling² + calibration²)`, has two parts. Sampling: even
with exact probabilities the realised metric of n rows varies; its standard
deviation is that of the metric when the labels are drawn from the window's own
calibrated probabilities (exact for accuracy, by the delta method for ROC AUC
and F1), so a harder or smaller window gets a wider band. Calibration: the
reference is cut into chunks, each chunk is estimated from probabilities
calibrated on the other folds and compared with its realised metric; what
those errors spread beyond their own sampling part is the calibration error.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> def window(rows, shift):  # a calibrated model; the shift moves inputs towards its boundary
...     x = rng.normal(2.0 - shift, 1.0, rows) * rng.choice([-1, 1], rows)
...     p = 1 / (1 + np.exp(-2 * x))
...     truth = np.where(rng.random(rows) < p, "yes", "no")
...     return pd.DataFrame({"label": np.where(p > 0.5, "yes", "no"), "proba.no": 1 - p, "proba.yes": p,
...                          "true_label": truth})
>>> estimator = ConfidenceEstimator().fit(window(5000, 0.0))
>>> shifted = window(2000, 1.5)
>>> estimate = estimator.estimate(shifted.drop(columns="true_label"))
>>> realised = float((shifted.label == shifted.true_label).mean())
>>> round(estimate.accuracy.value, 2), round(realised, 2), bool(estimate.accuracy.lower < realised < estimate.accuracy.upper)
(0.8, 0.79, True)
>>> estimator.estimate(shifted.drop(columns=["proba.no", "proba.yes"])).reason
'no_probabilities'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.optimize import isotonic_regression
from scipy.special import expit

from driftloop.drift.profile import _as_float, _column, _column_names

FORMAT_VERSION = 1
CALIBRATIONS = ("auto", "isotonic", "sigmoid", "none")
METRICS = ("accuracy", "roc_auc", "f1")  # roc_auc and f1 for binary models only
# Why no estimate was made: the `reason` of a PerformanceEstimate, and the label of its metric.
REASONS = (
    "empty_window",
    "no_probabilities",
    "too_few_rows",
    "invalid_probabilities",
    "probabilities_do_not_sum_to_one",
    "unseen_class",
)


@dataclass(frozen=True)
class MetricEstimate:
    """One metric of a window, estimated from probabilities: its value, its band and its floor.

    `lower`/`upper`: the band, `value ± sigmas · sqrt(sampling² + calibration²)`, clipped to [0, 1].
    `reference`: the metric realised on the reference. `floor`: below it the
    model is worse than its reference (default: the reference chunks' mean minus
    `sigmas` standard deviations, as NannyML's lower threshold; or as given).
    """

    metric: str
    value: float
    lower: float
    upper: float
    reference: float
    floor: float

    @property
    def below_floor(self) -> bool:
        return self.value < self.floor


@dataclass(frozen=True)
class PerformanceEstimate:
    """The estimate of one window, or why there is none (`reason`, one of REASONS, and a `note`).

    `rows` is the window's size, `used` the rows with probabilities it was estimated on.
    """

    rows: int
    used: int
    metrics: tuple[MetricEstimate, ...] = ()
    reason: str | None = None
    note: str = ""

    @property
    def estimated(self) -> bool:
        return self.reason is None

    @property
    def by_metric(self) -> dict[str, MetricEstimate]:
        return {metric.metric: metric for metric in self.metrics}

    @property
    def accuracy(self) -> MetricEstimate | None:
        return self.by_metric.get("accuracy")

    def to_dict(self) -> dict:
        return {
            "rows": self.rows, "used": self.used, "reason": self.reason, "note": self.note,
            "metrics": [{k: _json_float(v) for k, v in vars(m).items()} for m in self.metrics],
        }

    @classmethod
    def from_dict(cls, document: dict) -> PerformanceEstimate:
        metrics = tuple(
            MetricEstimate(**{k: (v if k == "metric" else (math.nan if v is None else float(v))) for k, v in m.items()})
            for m in document["metrics"]
        )
        return cls(rows=document["rows"], used=document["used"], metrics=metrics, reason=document["reason"],
                   note=document["note"])


@dataclass(frozen=True)
class Calibration:
    """A map from a model's probability of one class to a calibrated one (fitted on the reference).

    `isotonic`: piecewise linear through (x, y) (scikit-learn's IsotonicRegression, clipped);
    `sigmoid`: Platt scaling on the log-odds, 1 / (1 + exp(-(slope · logit(p) + intercept)));
    `none`: the identity.
    """

    method: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, p: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.interp(p, self.x, self.y)
        if self.method == "sigmoid":
            return expit(self.slope * _logit(p) + self.intercept)
        return p

    @classmethod
    def fit(cls, method: str, p: np.ndarray, hit: np.ndarray) -> Calibration:
        """Fit `method` to probabilities `p` and outcomes `hit` (1 when the class was the truth)."""
        if method == "isotonic":
            x, y = _isotonic(p, hit)
            return cls("isotonic", tuple(x.tolist()), tuple(y.tolist()))
        if method == "sigmoid":
            return cls("sigmoid", slope=(fitted := _platt(_logit(p), hit))[0], intercept=fitted[1])
        return cls("none")


def _isotonic(p: np.ndarray, hit: np.ndarray, presorted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of `hit` on `p` (scipy's pool-adjacent-violators; ties in `p` averaged, as
    scikit-learn's IsotonicRegression), kept as the end points of its constant pieces."""
    if not presorted:
        order = np.argsort(p)
        p, hit = p[order], hit[order]
    new = np.empty(len(p), dtype=bool)
    new[:1] = True
    np.not_equal(p[1:], p[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(p)))
    fitted = np.clip(isotonic_regression(np.add.reduceat(hit, starts) / counts, weights=counts).x, 0.0, 1.0)
    keep = np.ones(len(starts), dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return p[starts][keep], fitted[keep]


def _platt(z: np.ndarray, hit: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Platt scaling (Platt 1999): logistic regression of `hit` on `z` by Newton's method, with Platt's
    smoothed targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2), so that separable data still has a fit."""
    positives = hit.sum()
    target = np.where(hit > 0.5, (positives + 1) / (positives + 2), 1 / (len(hit) - positives + 2))
    design = np.column_stack([z, np.ones_like(z)])

    def loss(w: np.ndarray) -> float:  # cross-entropy, from the log-odds without overflow
        eta = design @ w
        return float(np.sum(np.logaddexp(0, eta) - target * eta))

    weights = np.array([1.0, 0.0])  # the identity: a calibrated model converges in a few steps
    current = loss(weights)
    for _ in range(iterations):
        mu = expit(design @ weights)
        gradient = design.T @ (mu - target)
        hessian = (design.T * (mu * (1 - mu))) @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        for _ in range(40):  # damped Newton: halve the step until the loss falls
            trial = weights - step
            if (trial_loss := loss(trial)) <= current:
                break
            step = step / 2
        else:
            break
        weights, current = trial, trial_loss
        if np.abs(step).max() < 1e-6:
            break
    return float(weights[0]), float(weights[1])


class ConfidenceEstimator:
    """Estimates accuracy (and, for binary models, ROC AUC and F1) of unlabelled windows. Parameters here,
    the labelled reference in `fit`, windows in `estimate`.

    calibration: "auto" (per class, isotonic regression unless the raw
      probabilities have the lower out-of-fold Brier score on the reference:
      NannyML's default, which also calibrates only when it helps), "isotonic",
      "sigmoid" (Platt scaling) or "none".
    chunk_size: rows per reference chunk for the band and the floor
      (default: a twentieth of the reference, at least `min_rows`).
    sigmas: half-width of the band and distance of the default floor, in standard deviations (3, as NannyML).
    min_rows: a window with fewer rows with probabilities is not estimated (`too_few_rows`).
    folds: cross-fitting folds on the reference. tolerance: how far from 1 a row's probabilities may sum.
    floors: {metric: value} to replace the default floors (e.g. {"accuracy": 0.9}).
    prediction, target, prefix: the columns (the store's `label`, `true_label`, `proba.<class>`).
    positive: the positive class of a binary model (default: the last in sorted order, as the reports).

    Windows are pyarrow Tables or pandas DataFrames with a `proba.<class>` column per class; the predicted
    label is read from `prediction` when present (a model may use a threshold other than 0.5), else it is
    the most probable class.
    """

    def __init__(
        self,
        calibration: str = "auto",
        chunk_size: int | None = None,
        sigmas: float = 3.0,
        min_rows: int = 50,
        folds: int = 5,
        tolerance: float = 1e-3,
        floors: Mapping[str, float] | None = None,
        prediction: str = "label",
        target: str = "true_label",
        prefix: str = "proba.",
        positive: str | None = None,
        seed: int = 0,
    ) -> None:
        if calibration not in CALIBRATIONS:
            raise ValueError(f"Invalid 'calibration' {calibration!r}. Valid values are: {list(CALIBRATIONS)}")
        if chunk_size is not None and chunk_size < 2:
            raise ValueError(f"'chunk_size' must be an integer >= 2 or None. Got {chunk_size!r} instead.")
        if not sigmas > 0 or min_rows < 1 or folds < 2 or not 0 < tolerance < 1:
            raise ValueError("sigmas must be > 0, min_rows >= 1, folds >= 2 and tolerance in (0, 1)")
        unknown = set(floors or {}) - set(METRICS)
        if unknown:
            raise ValueError(f"Invalid metrics in 'floors': {sorted(unknown)}. Valid values are: {list(METRICS)}")
        self.calibration = calibration
        self.chunk_size = chunk_size
        self.sigmas = sigmas
        self.min_rows = min_rows
        self.folds = folds
        self.tolerance = tolerance
        self.floors = dict(floors or {})
        self.prediction = prediction
        self.target = target
        self.prefix = prefix
        self.positive = positive
        self.seed = seed

    # ---- fitting -------------------------------------------------------------------------------------------

    def fit(self, reference: pa.Table | pd.DataFrame) -> ConfidenceEstimator:
        """Calibrate on the labelled rows of `reference`; measure the calibration error and the floors on its chunks.

        Raises ValueError when the reference cannot serve: no probability columns, rows whose probabilities
        do not sum to one, true labels without a probability column, too few labelled rows for two chunks.
        """
        classes = self._classes(reference)
        if len(classes) < 2:
            raise ValueError(f"the reference needs a probability column per class ({self.prefix}<class>), "
                             f"at least two; found {classes}")
        if self.positive is not None and (len(classes) != 2 or self.positive not in classes):
            raise ValueError(f"'positive' names one of the two classes of a binary model; classes are {classes}")
        positive = (self.positive or sorted(classes)[-1]) if len(classes) == 2 else None
        names = _column_names(reference)
        if self.target not in names:
            raise ValueError(f"the reference has no {self.target!r} column: the estimator is fitted on labelled rows")
        truth_labels = _labels(_column(reference, self.target))
        truth = _class_codes(truth_labels, classes)
        probabilities = self._probabilities(reference, classes)
        labelled = (truth != -2) & ~np.isnan(probabilities).all(axis=1)
        truth, probabilities = truth[labelled], np.nan_to_num(probabilities[labelled])
        predicted = self._predicted(reference, classes, probabilities, labelled)
        if (predicted < 0).any():
            raise ValueError(f"{int((predicted < 0).sum())} labelled reference rows predict a label that has no "
                             f"probability column; classes are {classes}")
        bad = np.abs(probabilities.sum(axis=1) - 1) > self.tolerance
        if bad.any():
            raise ValueError(f"{int(bad.sum())} labelled reference rows have probabilities that do not sum to one")
        if (truth == -1).any():
            unknown = sorted(set(truth_labels.filter(pa.array(labelled)).to_numpy(zero_copy_only=False)[truth == -1]))
            raise ValueError(f"true labels {unknown[:5]} have no probability column; classes are {classes}")
        rows = len(truth)
        chunk_size = self.chunk_size or max(self.min_rows, rows // 20)
        if rows < 2 * chunk_size:
            raise ValueError(f"the reference has {rows} labelled rows with probabilities; the band needs at least "
                             f"two chunks of {chunk_size} (min_rows={self.min_rows})")
        hits = np.eye(len(classes), dtype=bool)[truth]
        rng = np.random.default_rng(self.seed)
        fold = rng.permutation(rows) % self.folds
        calibrated_classes = [classes.index(positive)] if positive is not None else list(range(len(classes)))
        calibrations, out_of_fold = {}, probabilities.copy()
        for k in calibrated_classes:
            calibrations[classes[k]], out_of_fold[:, k] = self._choose(probabilities[:, k], hits[:, k].astype(float), fold)
        out_of_fold = _completed(out_of_fold, classes, positive)
        order = rng.permutation(rows)
        chunks = [order[i * chunk_size:(i + 1) * chunk_size] for i in range(rows // chunk_size)]
        pos = None if positive is None else classes.index(positive)
        realised = {m: [] for m in self._metrics(positive)}
        errors = {m: [] for m in realised}
        sampling = {m: [] for m in realised}
        for chunk in chunks:
            ranking = _ranking(probabilities[chunk], pos)
            real = _realised(hits[chunk], predicted[chunk], ranking, pos)
            guess = _expected(out_of_fold[chunk], predicted[chunk], ranking, pos)
            noise = _sampling_sd(out_of_fold[chunk], predicted[chunk], ranking, pos)
            for metric in realised:
                if not math.isnan(real[metric]) and not math.isnan(guess[metric]):
                    realised[metric].append(real[metric])
                    errors[metric].append(real[metric] - guess[metric])
                    sampling[metric].append(noise[metric] ** 2)
        whole = _realised(hits, predicted, _ranking(probabilities, pos), pos)
        self.classes_ = classes
        self.positive_ = positive
        self.calibrations_ = calibrations
        self.chunk_size_ = chunk_size
        self.reference_rows_ = rows
        self.reference_ = {m: whole[m] for m in realised}
        # The chunks' mean squared error beyond what sampling alone gives them: bias and calibration noise.
        self.calibration_error_ = {
            m: float(math.sqrt(max(0.0, np.mean(np.square(e)) - np.nanmean(sampling[m])))) if len(e) > 1 else math.nan
            for m, e in errors.items()
        }
        self.floor_ = {m: float(self.floors.get(m, np.mean(r) - self.sigmas * np.std(r, ddof=1) if len(r) > 1
                                                else math.nan)) for m, r in realised.items()}
        return self

    def _choose(self, p: np.ndarray, hit: np.ndarray, fold: np.ndarray) -> tuple[Calibration, np.ndarray]:
        """The calibration, fitted on every row, and its out-of-fold calibrated probabilities."""
        candidates = ("none", "isotonic") if self.calibration == "auto" else (self.calibration,)
        order = np.argsort(p)  # sorted once; each fold's training rows keep the order (ties are averaged)
        ordered_p, ordered_hit, ordered_fold = p[order], hit[order], fold[order]
        best = None
        for method in candidates:
            oof = p.copy()
            for f in range(self.folds) if method != "none" else ():
                test, train = fold == f, ordered_fold != f
                if method == "isotonic":  # as Calibration.fit(...).apply(...), without sorting again
                    oof[test] = np.interp(p[test], *_isotonic(ordered_p[train], ordered_hit[train], presorted=True))
                else:
                    oof[test] = Calibration.fit(method, ordered_p[train], ordered_hit[train]).apply(p[test])
            brier = float(np.dot(oof - hit, oof - hit)) / len(p)
            if best is None or brier < best[0] - 1e-12:
                best = (brier, method, oof)
        if best[1] == "isotonic":
            x, y = _isotonic(ordered_p, ordered_hit, presorted=True)
            return Calibration("isotonic", tuple(x.tolist()), tuple(y.tolist())), best[2]
        return Calibration.fit(best[1], p, hit), best[2]

    # ---- estimating ----------------------------------------------------------------------------------------

    def estimate(self, window: pa.Table | pd.DataFrame) -> PerformanceEstimate:
        """The window's estimated metrics, or a PerformanceEstimate whose `reason` says why there are none."""
        if not hasattr(self, "classes_"):
            raise ValueError("this ConfidenceEstimator is not fitted: call fit(reference) or ConfidenceEstimator.load")
        rows = len(window)
        if rows == 0:
            return PerformanceEstimate(0, 0, reason="empty_window", note="the window has no rows")
        present = self._classes(window)
        if not present:
            return PerformanceEstimate(rows, 0, reason="no_probabilities",
                                       note=f"the window has no {self.prefix}<class> columns")
        try:
            others = [c for c in present if c not in self.classes_]
            extra = self._probabilities(window, others) if others else None
            probabilities = self._probabilities(window, self.classes_)
        except ValueError as error:  # a probability column that holds text
            return PerformanceEstimate(rows, 0, reason="invalid_probabilities", note=str(error))
        unseen = [c for i, c in enumerate(others) if np.nan_to_num(extra[:, i]).any()]
        if unseen:
            return PerformanceEstimate(rows, 0, reason="unseen_class",
                                       note=f"probabilities for classes never seen at reference: {unseen}")
        has = ~np.isnan(probabilities).all(axis=1)
        used = int(has.sum())
        if used == 0:
            return PerformanceEstimate(rows, 0, reason="no_probabilities", note="no row of the window has probabilities")
        probabilities = np.nan_to_num(probabilities[has])
        invalid = ~np.isfinite(probabilities).all(axis=1) | (probabilities < 0).any(axis=1) | (probabilities > 1).any(axis=1)
        if invalid.any():
            return PerformanceEstimate(rows, used, reason="invalid_probabilities",
                                       note=f"{int(invalid.sum())} rows have probabilities outside [0, 1]")
        sums = probabilities.sum(axis=1)
        off = np.abs(sums - 1) > self.tolerance
        if off.any():
            return PerformanceEstimate(rows, used, reason="probabilities_do_not_sum_to_one",
                                       note=f"{int(off.sum())} of {used} rows do not sum to one "
                                            f"(within {self.tolerance:g}; e.g. {float(sums[off][0]):.6g})")
        predicted = self._predicted(window, self.classes_, probabilities, has)
        if (predicted < 0).any():
            logged = _labels(_column(window, self.prediction)).filter(pa.array(has)).to_numpy(zero_copy_only=False)
            labels = sorted({str(v) for v in logged[predicted < 0]})
            return PerformanceEstimate(rows, used, reason="unseen_class",
                                       note=f"predicted labels never seen at reference: {labels[:5]}")
        if used < self.min_rows:
            return PerformanceEstimate(rows, used, reason="too_few_rows",
                                       note=f"{used} rows with probabilities, fewer than min_rows={self.min_rows}")
        calibrated = self._calibrated(probabilities)
        pos = None if self.positive_ is None else self.classes_.index(self.positive_)
        ranking = _ranking(probabilities, pos)
        values = _expected(calibrated, predicted, ranking, pos)
        sampling = _sampling_sd(calibrated, predicted, ranking, pos)
        metrics = []
        for metric in self.reference_:
            value = values[metric]
            half = self.sigmas * math.hypot(sampling[metric], self.calibration_error_[metric])
            metrics.append(MetricEstimate(metric, value, float(np.clip(value - half, 0, 1)), float(np.clip(value + half, 0, 1)),
                                          self.reference_[metric], self.floor_[metric]))
        note = f"{rows - used} rows without probabilities left out" if used < rows else ""
        return PerformanceEstimate(rows, used, tuple(metrics), note=note)

    def _calibrated(self, probabilities: np.ndarray) -> np.ndarray:
        calibrated = probabilities.copy()
        for name, calibration in self.calibrations_.items():
            k = self.classes_.index(name)
            calibrated[:, k] = calibration.apply(probabilities[:, k])
        return _completed(calibrated, self.classes_, self.positive_)

    # ---- columns -------------------------------------------------------------------------------------------

    def _classes(self, table) -> list[str]:
        return [name[len(self.prefix):] for name in _column_names(table) if name.startswith(self.prefix)]

    def _probabilities(self, table, classes: list[str]) -> np.ndarray:
        """(rows, classes) float array; NaN where a value is missing, 0 for a class column the table lacks."""
        names = set(_column_names(table))
        columns = [_as_float(_column(table, self.prefix + c), self.prefix + c) if self.prefix + c in names
                   else None for c in classes]
        present = [c for c in columns if c is not None]
        blank = np.where(np.isnan(np.column_stack(present)).all(axis=1), np.nan, 0.0) if present else np.zeros(len(table))
        return np.column_stack([blank if c is None else c for c in columns]) if columns else np.zeros((len(table), 0))

    def _predicted(self, table, classes: list[str], probabilities: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Index of each row's predicted class (-1 for a label not among `classes`), argmax when not logged."""
        if self.prediction not in _column_names(table):
            return probabilities.argmax(axis=1)
        predicted = _class_codes(_labels(_column(table, self.prediction)), classes)[rows]
        missing = predicted == -2
        predicted[missing] = probabilities[missing].argmax(axis=1)  # no label logged: the most probable class
        return predicted

    def _metrics(self, positive: str | None) -> tuple[str, ...]:
        return METRICS if positive is not None else ("accuracy",)

    # ---- persistence ---------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        parameters = {
            "calibration": self.calibration, "chunk_size": self.chunk_size, "sigmas": self.sigmas,
            "min_rows": self.min_rows, "folds": self.folds, "tolerance": self.tolerance, "floors": self.floors,
            "prediction": self.prediction, "target": self.target, "prefix": self.prefix,
            "positive": self.positive, "seed": self.seed,
        }
        return {
            "format_version": FORMAT_VERSION, "parameters": parameters, "classes": self.classes_,
            "positive": self.positive_, "chunk_size": self.chunk_size_, "reference_rows": self.reference_rows_,
            "calibrations": {name: vars(c) for name, c in self.calibrations_.items()},
            "reference": _json_floats(self.reference_), "calibration_error": _json_floats(self.calibration_error_),
            "floor": _json_floats(self.floor_),
        }

    @classmethod
    def from_dict(cls, document: dict) -> ConfidenceEstimator:
        if document.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"Unsupported estimator format_version {document.get('format_version')!r}; "
                             f"this code reads {FORMAT_VERSION}")
        estimator = cls(**document["parameters"])
        estimator.classes_ = list(document["classes"])
        estimator.positive_ = document["positive"]
        estimator.chunk_size_ = document["chunk_size"]
        estimator.reference_rows_ = document["reference_rows"]
        estimator.calibrations_ = {name: Calibration(**{**c, "x": tuple(c["x"]), "y": tuple(c["y"])})
                                   for name, c in document["calibrations"].items()}
        estimator.reference_, estimator.calibration_error_, estimator.floor_ = (
            {m: math.nan if v is None else float(v) for m, v in document[key].items()}
            for key in ("reference", "calibration_error", "floor"))
        return estimator

    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator as JSON (no pickle), atomically: a reader sees the old file or the new one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ConfidenceEstimator:
        return cls.from_dict(json.loads(Path(path).read_text()))


# ---- the metrics, realised and expected --------------------------------------------------------------------


def _realised(hits: np.ndarray, predicted: np.ndarray, ranking: _Ranking | None, pos: int | None) -> dict[str, float]:
    """Metrics from the true labels (`hits`: one-hot truth); ROC AUC ranks by the model's own probability."""
    correct = hits[np.arange(len(predicted)), predicted]
    metrics = {"accuracy": float(correct.mean())}
    if pos is not None:
        truth = hits[:, pos].astype(float)
        metrics["roc_auc"] = ranking.auc(truth)
        metrics["f1"] = expected_f1(truth, predicted == pos)
    return metrics


def _expected(calibrated: np.ndarray, predicted: np.ndarray, ranking: _Ranking | None, pos: int | None) -> dict[str, float]:
    """Expected metrics when each row's true class is drawn from its calibrated probabilities."""
    metrics = {"accuracy": float(calibrated[np.arange(len(predicted)), predicted].mean())}
    if pos is not None:
        metrics["roc_auc"] = ranking.auc(calibrated[:, pos])
        metrics["f1"] = expected_f1(calibrated[:, pos], predicted == pos)
    return metrics


def _sampling_sd(calibrated: np.ndarray, predicted: np.ndarray, ranking: _Ranking | None,
                 pos: int | None) -> dict[str, float]:
    """Standard deviation of each realised metric when the labels are drawn from the calibrated probabilities.

    Accuracy: exact, sqrt(sum c (1 - c)) / n with c the probability of the predicted class. ROC AUC and F1:
    the delta method on the sums of independent Bernoulli labels they are functions of (ROC AUC of the
    rank-sum S = sum y r and the positives P = sum y; F1 = 2 TP / (TP + FN + predicted positives)).
    """
    n = len(predicted)
    confidence = calibrated[np.arange(n), predicted]
    sd = {"accuracy": float(math.sqrt(np.sum(confidence * (1 - confidence))) / n)}
    if pos is None:
        return sd
    q = calibrated[:, pos]
    v = q * (1 - q)
    ranks = ranking.ranks
    s, p = float(ranks @ q), float(q.sum())
    pairs = p * (n - p)
    if pairs > 0:
        d_s = 1 / pairs
        d_p = (-(p + 0.5) * pairs - (s - p * (p + 1) / 2) * (n - 2 * p)) / pairs**2
        variance = d_s**2 * (ranks**2 @ v) + 2 * d_s * d_p * (ranks @ v) + d_p**2 * v.sum()
        sd["roc_auc"] = float(math.sqrt(max(variance, 0.0)))
    else:
        sd["roc_auc"] = math.nan
    predicted_positive = predicted == pos
    tp, fn, c = q[predicted_positive].sum(), q[~predicted_positive].sum(), float(predicted_positive.sum())
    total = tp + fn + c
    if total > 0:
        variance = (2 * (fn + c) / total**2) ** 2 * v[predicted_positive].sum() + (2 * tp / total**2) ** 2 * v[~predicted_positive].sum()
        sd["f1"] = float(math.sqrt(variance))
    else:
        sd["f1"] = math.nan
    return sd


@dataclass(frozen=True, eq=False)
class _Ranking:
    """The model's scores of some rows, sorted once: `group[i]` is row i's place among the distinct scores
    (ascending), `ranks[i]` its 1-based rank with ties averaged (scipy.stats.rankdata's 'average')."""

    group: np.ndarray
    groups: int
    ranks: np.ndarray

    @classmethod
    def of(cls, score: np.ndarray) -> _Ranking:
        order = np.argsort(score)
        ordered = score[order]
        starts_group = np.empty(len(score), dtype=bool)
        starts_group[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
        sorted_group = np.cumsum(starts_group) - 1
        group = np.empty(len(score), dtype=np.int64)
        group[order] = sorted_group
        ends = np.cumsum(np.bincount(sorted_group)) if len(score) else np.zeros(0, dtype=np.int64)
        starts = np.concatenate(([0], ends[:-1]))
        return cls(group, len(ends), ((starts + 1 + ends) / 2)[group])

    def auc(self, positive: np.ndarray) -> float:
        """See `expected_roc_auc`."""
        q = np.asarray(positive, dtype=np.float64)
        pos_sum = np.bincount(self.group, q, self.groups)
        neg_sum = np.bincount(self.group, 1.0 - q, self.groups)
        own = np.bincount(self.group, q * (1.0 - q), self.groups)
        below = np.cumsum(neg_sum) - neg_sum
        pairs = q.sum() * (1.0 - q).sum() - own.sum()
        if pairs <= 0:
            return math.nan
        return float((pos_sum @ below + 0.5 * (pos_sum @ neg_sum - own.sum())) / pairs)


def _ranking(probabilities: np.ndarray, pos: int | None) -> _Ranking | None:
    return None if pos is None else _Ranking.of(probabilities[:, pos])


def expected_roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of `score` when row i is positive with probability `positive[i]` (0/1 gives the realised AUC).

    The expected count of correctly ordered (positive, negative) pairs, ties counted half, over the
    expected count of such pairs: sum over i, j with s_i > s_j of q_i (1 - q_j), divided by
    sum over i != j of q_i (1 - q_j). NaN when there is no pair.

    >>> expected_roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    return _Ranking.of(np.asarray(score, dtype=np.float64)).auc(positive)


def expected_f1(positive: np.ndarray, predicted_positive: np.ndarray) -> float:
    """F1 from expected counts: TP = sum of q over predicted positives, FP = sum of 1 - q there, FN = sum of q elsewhere.

    >>> expected_f1(np.array([1.0, 0.0, 1.0, 0.0]), np.array([True, True, False, False]))
    0.5
    """
    q = np.asarray(positive, dtype=np.float64)
    tp = q[predicted_positive].sum()
    fp = (1.0 - q[predicted_positive]).sum()
    fn = q[~predicted_positive].sum()
    return float(2 * tp / (2 * tp + fp + fn)) if 2 * tp + fp + fn > 0 else math.nan


def _completed(calibrated: np.ndarray, classes: list[str], positive: str | None) -> np.ndarray:
    """Binary: the negative class is 1 - positive. Multiclass: rows renormalised to sum to one (as NannyML)."""
    calibrated = np.clip(calibrated, 0.0, 1.0)
    if positive is not None:
        k = classes.index(positive)
        calibrated[:, 1 - k] = 1.0 - calibrated[:, k]
        return calibrated
    sums = calibrated.sum(axis=1, keepdims=True)
    return np.divide(calibrated, sums, out=np.full_like(calibrated, 1.0 / len(classes)), where=sums > 0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def _labels(column) -> pa.Array:
    """A label column as an Arrow string array, nulls kept, as the store casts labels (pc.cast to string);
    a float column of whole numbers (1.0, NaN for a missing label) names the class "1"."""
    if isinstance(column, pa.ChunkedArray):
        array = column.combine_chunks()
    elif isinstance(column, pa.Array):
        array = column
    else:
        series = pd.Series(column).reset_index(drop=True)
        try:
            array = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed Python types in an object column
            array = pa.array(series.astype(str).to_numpy(dtype=object), pa.string(), mask=series.isna().to_numpy())
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_floating(array.type):
        values = array.to_numpy(zero_copy_only=False)
        if np.all(np.mod(values[~np.isnan(values)], 1) == 0):
            array = pc.cast(array, pa.int64())
    return array if pa.types.is_string(array.type) else pc.cast(array, pa.string())


def _class_codes(labels: pa.Array, classes: list[str]) -> np.ndarray:
    """Each label's index in `classes`: -1 for a label that is not one of them, -2 for a missing label."""
    codes = pc.index_in(labels, value_set=pa.array(classes, pa.string()))
    codes = np.asarray(codes.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    codes[np.asarray(labels.is_null().to_numpy(zero_copy_only=False))] = -2
    return codes


def _json_float(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _json_floats(values: Mapping[str, float]) -> dict:
    return {k: _json_float(v) for k, v in values.items()}


__all__ = [
    "CALIBRATIONS", "METRICS", "REASONS", "Calibration", "ConfidenceEstimator", "MetricEstimate",
    "PerformanceEstimate", "expected_f1", "expected_roc_auc",
]
