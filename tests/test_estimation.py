"""Performance estimation without labels: it follows a covariate shift, it cannot see a concept drift,
and bad input gives a reason, never an exception."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from driftloop.drift.estimation import REASONS, ConfidenceEstimator, PerformanceEstimate

SEPARATION = 3.0  # components at (-3, 0) and (3, 0), unit covariance; labels from P(y=1|x) = sigmoid(x1)


def mixture(rows: int, rng, move: float = 0.0, concept: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Inputs of a two-component Gaussian mixture whose components moved `move` of the way towards each other;
    labels from the reference's P(y|x) (a covariate shift), or, with `concept`, from another P(y|x) for the same
    inputs (a pure concept drift: the upper half-plane x2 > 0.5 now means the other class)."""
    component = rng.integers(0, 2, rows)
    means = np.array([[-SEPARATION, 0.0], [SEPARATION, 0.0]]) * (1 - move)
    x = means[component] + rng.normal(size=(rows, 2))
    p = 1 / (1 + np.exp(-x[:, 0]))
    if concept:
        p = np.where(x[:, 1] > 0.5, 1 - p, p)
    return x, (rng.random(rows) < p).astype(int)


def logged(model, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """What the store holds for these predictions: label, proba.<class>, and true_label (strings)."""
    p = model.predict_proba(x)
    frame = pd.DataFrame({f"proba.{c}": p[:, i] for i, c in enumerate(model.classes_)})
    frame["label"] = model.classes_[p.argmax(axis=1)].astype(str)
    frame["true_label"] = y.astype(str)
    return frame


def realised(frame: pd.DataFrame) -> dict[str, float]:
    truth, predicted = frame.true_label.to_numpy(), frame.label.to_numpy()
    metrics = {"accuracy": float((truth == predicted).mean())}
    if "proba.1" in frame and frame.shape[1] == 4:
        metrics["roc_auc"] = roc_auc_score(truth == "1", frame["proba.1"])
        metrics["f1"] = f1_score(truth == "1", predicted == "1")
    return metrics


@pytest.fixture(scope="module")
def mixture_model():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    model = LogisticRegression().fit(*mixture(5000, rng))
    estimator = ConfidenceEstimator().fit(logged(model, *mixture(5000, rng)))
    return model, estimator, rng


def test_the_estimate_follows_a_covariate_shift_and_misses_a_concept_drift(mixture_model):
    """A logistic model of a Gaussian mixture is calibrated everywhere, so under a covariate shift (the components
    move together; P(y|x) unchanged) every realised metric lies in the estimate's band. Under a pure concept drift
    (same inputs, other labels) the model's probabilities, hence the estimate, do not move: the drop is invisible."""
    model, estimator, rng = mixture_model
    reference_accuracy = estimator.reference_["accuracy"]
    estimated, actual = [], []
    for move in (0.0, 0.3, 0.6, 0.9):
        window = logged(model, *mixture(2000, rng, move))
        estimate = estimator.estimate(window.drop(columns="true_label"))
        truth = realised(window)
        assert estimate.estimated and set(estimate.by_metric) == {"accuracy", "roc_auc", "f1"}
        for metric, value in truth.items():
            band = estimate.by_metric[metric]
            assert band.lower <= value <= band.upper, (move, metric, value, band)
            assert band.upper - band.lower < 0.12
        estimated.append(estimate.accuracy.value)
        actual.append(truth["accuracy"])
    assert actual[0] - actual[-1] > 0.25  # the shift really hurts...
    assert abs((estimated[0] - estimated[-1]) - (actual[0] - actual[-1])) < 0.03  # ...and the estimate sees it
    assert estimator.estimate(logged(model, *mixture(2000, rng, 0.9))).accuracy.below_floor

    drifted = logged(model, *mixture(2000, rng, concept=True))
    estimate = estimator.estimate(drifted.drop(columns="true_label")).accuracy
    truth = realised(drifted)["accuracy"]
    assert reference_accuracy - truth > 0.2  # the concept drift hurts as much...
    assert abs(estimate.value - reference_accuracy) < 0.02 and not estimate.below_floor  # ...and the estimate stays
    assert truth < estimate.lower


def test_the_estimate_follows_rotated_digits():
    """Digits, seen at reference at every angle within ±45°, later mostly upright or mostly tilted (a covariate
    shift: the share of hard, tilted images grows): the estimate falls with the realised accuracy."""
    from scipy import ndimage
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    images, digits = load_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8) / 16
    rng = np.random.default_rng(0)
    train, reference, test = np.split(rng.permutation(len(digits)), [900, 1350])

    def rotated(rows, low, high, copies):
        rows = np.repeat(rows, copies)
        angles = rng.uniform(low, high, len(rows)) * rng.choice([-1, 1], len(rows))
        x = np.stack([ndimage.rotate(images[i], a, reshape=False, order=1) for i, a in zip(rows, angles, strict=True)])
        return x.reshape(len(rows), -1), digits[rows]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MLP stops before it converges: good enough, and quick
        model = MLPClassifier((32,), alpha=1e-3, max_iter=150, random_state=0).fit(*rotated(train, 0, 45, 3))
    estimator = ConfidenceEstimator().fit(logged(model, *rotated(reference, 0, 45, 4)))
    upright = logged(model, *rotated(test, 0, 5, 2))
    tilted = logged(model, *rotated(test, 40, 45, 2))
    estimates = [estimator.estimate(w.drop(columns="true_label")).accuracy.value for w in (upright, tilted)]
    actual = [realised(w)["accuracy"] for w in (upright, tilted)]
    assert actual[0] - actual[1] > 0.07
    assert max(abs(e - a) for e, a in zip(estimates, actual, strict=True)) < 0.04, (estimates, actual)
    assert estimates[0] - estimates[1] > 0.05


def test_calibration_on_the_reference_corrects_an_overconfident_model(mixture_model):
    """Probabilities pushed towards 0 and 1 (as an overfitted model's): taken as they are, they overstate the
    accuracy; isotonic ("auto" picks it here) or Platt calibration on the reference brings it back."""
    model, _, rng = mixture_model

    def overconfident(frame):
        p = frame["proba.1"].to_numpy()
        sharp = 1 / (1 + np.exp(-4 * np.log(p / (1 - p))))
        return frame.assign(**{"proba.1": sharp, "proba.0": 1 - sharp})

    reference = overconfident(logged(model, *mixture(5000, rng)))
    window = overconfident(logged(model, *mixture(2000, rng, 0.6)))
    truth = realised(window)["accuracy"]
    for calibration in ("auto", "isotonic", "sigmoid"):
        estimate = ConfidenceEstimator(calibration=calibration).fit(reference).estimate(window).accuracy
        assert estimate.lower <= truth <= estimate.upper, calibration
    raw = ConfidenceEstimator(calibration="none").fit(reference).estimate(window).accuracy
    assert raw.value - truth > 0.05


def test_the_band_covers_the_realised_accuracy_of_clean_windows(mixture_model):
    model, estimator, rng = mixture_model
    covered = 0
    for _ in range(60):
        window = logged(model, *mixture(500, rng))
        band = estimator.estimate(window).accuracy
        covered += band.lower <= realised(window)["accuracy"] <= band.upper
    assert covered >= 57  # 3 sigmas: ~99.7 % in theory


@pytest.mark.parametrize(("reason", "broken"), [
    ("empty_window", lambda w: w.iloc[:0]),
    ("no_probabilities", lambda w: w.drop(columns=["proba.0", "proba.1"])),
    ("no_probabilities", lambda w: w.assign(**{"proba.0": np.nan, "proba.1": np.nan})),
    ("too_few_rows", lambda w: w.iloc[:20]),
    ("probabilities_do_not_sum_to_one", lambda w: w.assign(**{"proba.0": w["proba.0"] * 0.5})),
    ("invalid_probabilities", lambda w: w.assign(**{"proba.0": w["proba.0"] - 1, "proba.1": w["proba.1"] + 1})),
    ("invalid_probabilities", lambda w: w.assign(**{"proba.0": "high"})),
    ("unseen_class", lambda w: w.assign(**{"proba.2": 0.1, "proba.0": w["proba.0"] * 0.9, "proba.1": w["proba.1"] * 0.9})),
    ("unseen_class", lambda w: w.assign(label="2")),
], ids=lambda value: value if isinstance(value, str) else "")
def test_bad_windows_give_a_reason_not_an_exception(mixture_model, reason, broken):
    model, estimator, rng = mixture_model
    window = broken(logged(model, *mixture(300, rng)).drop(columns="true_label"))
    for table in (window, pa.Table.from_pandas(window, preserve_index=False)):
        estimate = estimator.estimate(table)
        assert estimate.reason == reason and not estimate.estimated and estimate.metrics == ()
        assert estimate.reason in REASONS and estimate.note
        assert PerformanceEstimate.from_dict(json.loads(json.dumps(estimate.to_dict()))) == estimate


def test_rows_without_probabilities_are_left_out_and_said(mixture_model):
    model, estimator, rng = mixture_model
    window = logged(model, *mixture(400, rng)).drop(columns="true_label")
    window.loc[:99, ["proba.0", "proba.1"]] = np.nan
    estimate = estimator.estimate(pa.Table.from_pandas(window, preserve_index=False))
    assert estimate.estimated and (estimate.rows, estimate.used) == (400, 300)
    assert "100 rows without probabilities" in estimate.note


def test_save_and_load_give_the_same_estimates(mixture_model, tmp_path):
    model, estimator, rng = mixture_model
    path = estimator.save(tmp_path / "estimator.json")
    json.loads(path.read_text())  # plain JSON, no pickle
    loaded = ConfidenceEstimator.load(path)
    window = logged(model, *mixture(1000, rng, 0.5))
    assert loaded.estimate(window) == estimator.estimate(window)
    assert loaded.to_dict() == estimator.to_dict()


def test_a_multiclass_model_estimates_accuracy_only():
    rng = np.random.default_rng(3)
    rows = 3000
    logits = rng.normal(size=(rows, 3)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(3, p=row) for row in p])
    frame = pd.DataFrame({f"proba.{k}": p[:, i] for i, k in enumerate("abc")})
    frame["true_label"] = np.array(["a", "b", "c"])[truth]
    estimator = ConfidenceEstimator().fit(frame.iloc[:2000])
    estimate = estimator.estimate(frame.iloc[2000:].drop(columns="true_label"))  # no label column: argmax
    assert [m.metric for m in estimate.metrics] == ["accuracy"]
    truth_accuracy = (frame.true_label.iloc[2000:].to_numpy() == np.array(["a", "b", "c"])[p[2000:].argmax(1)]).mean()
    assert estimate.accuracy.lower <= truth_accuracy <= estimate.accuracy.upper


def test_references_it_cannot_fit_on_are_clear_errors(mixture_model):
    model, _, rng = mixture_model
    reference = logged(model, *mixture(400, rng))
    with pytest.raises(ValueError, match="no 'true_label' column"):
        ConfidenceEstimator().fit(reference.drop(columns="true_label"))
    with pytest.raises(ValueError, match="at least two"):
        ConfidenceEstimator().fit(reference.drop(columns=["proba.0", "proba.1"]))
    with pytest.raises(ValueError, match="at least two chunks"):
        ConfidenceEstimator().fit(reference.iloc[:80])
    with pytest.raises(ValueError, match="do not sum to one"):
        ConfidenceEstimator().fit(reference.assign(**{"proba.0": 0.2}))
    with pytest.raises(ValueError, match=r"Valid values are: \['auto', 'isotonic', 'sigmoid', 'none'\]"):
        ConfidenceEstimator(calibration="beta")
    with pytest.raises(ValueError, match="not fitted"):
        ConfidenceEstimator().estimate(reference)
