"""Performance estimation without labels: driftloop's ConfidenceEstimator against NannyML 0.13's CBPE.

Same models, same reference, same windows, same run; each estimate is compared with the window's
realised accuracy (and, for the binary model, ROC AUC and F1), over several shifts and seeds:
- mixture: a logistic model of a two-component Gaussian mixture whose components move towards each
  other (a covariate shift; labels from the reference's P(y|x));
- mixture-overconfident: the same, the logged probabilities sharpened (logit x 4), so calibration
  on the reference has work to do;
- digits: an MLP on scikit-learn's 8x8 digits, trained and profiled on images tilted up to ±45°,
  then shown mostly upright or mostly tilted (10 classes: accuracy only).

NannyML is not a dependency of driftloop: the first run creates its own virtualenv in the cache
($DRIFTLOOP_CACHE or ~/.cache/driftloop, then nannyml-0.13/: `pip install nannyml==0.13.*` plus
statsmodels, which it imports without declaring), with its telemetry off (NML_DISABLE_USAGE_LOGGING).
The data goes to Parquet; one NannyML process fits CBPE (isotonic calibration, as its default) on
each reference and estimates the windows as chunks of the same size; its estimates come back as JSON.
Timed on each side, in CPU seconds of its process (the machine is shared, so wall time says more about
the neighbours than about the code; both sides run with one BLAS/OpenMP thread): fit plus estimation of
every window, not the imports, not the file reading. Wall times are printed too.

    ~/.cache/driftloop/venv/bin/python benchmarks/estimation_vs_nannyml.py [--rows 5000 --seeds 5]

Writes benchmarks/results/estimation_vs_nannyml.json: mae_driftloop, mae_nannyml (of accuracy, over
every window), seconds_driftloop, seconds_nannyml (CPU seconds, summed over every run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one thread on each side, set before numpy loads

NANNYML = "nannyml==0.13.*"
NANNYML_EXTRAS = ["statsmodels"]  # nannyml 0.13 imports it without declaring it
MIXTURE_MOVES = (0.0, 0.3, 0.5, 0.7, 0.9)
DIGIT_ANGLES = ((0, 5), (10, 15), (20, 25), (30, 35), (40, 45))

NANNYML_SCRIPT = r'''
import json, sys, time, warnings
t0 = time.perf_counter()
import nannyml as nml
import pandas as pd
imported = time.perf_counter() - t0
warnings.simplefilter("ignore")
folder = sys.argv[1]
manifest = json.load(open(f"{folder}/manifest.json"))
results = {"import_seconds": imported, "runs": {}}
for run in manifest["runs"]:
    reference = pd.read_parquet(f"{folder}/{run['name']}-reference.parquet")
    analysis = pd.read_parquet(f"{folder}/{run['name']}-analysis.parquet")
    binary = len(run["classes"]) == 2
    if binary:  # NannyML's binary CBPE wants 0/1 labels; the positive class is the second
        for frame in (reference, analysis):
            for column in ("y_true", "y_pred"):
                if column in frame:
                    frame[column] = (frame[column] == run["classes"][1]).astype(int)
    start, cpu = time.perf_counter(), time.process_time()
    estimator = nml.CBPE(
        problem_type="classification_binary" if binary else "classification_multiclass",
        y_pred_proba=f"p_{run['classes'][1]}" if binary else {c: f"p_{c}" for c in run["classes"]},
        y_pred="y_pred", y_true="y_true", metrics=run["metrics"], chunk_size=run["chunk_rows"],
    )
    estimator.fit(reference)
    estimated = estimator.estimate(analysis).filter(period="analysis").to_df()
    results["runs"][run["name"]] = {
        "seconds": time.process_time() - cpu, "wall_seconds": time.perf_counter() - start,
        **{m: estimated[(m, "value")].tolist() for m in run["metrics"]}}
json.dump(results, open(f"{folder}/nannyml.json", "w"))
'''


def nannyml_python() -> Path:
    """The python of NannyML's own virtualenv in the cache, created on the first run (keyed by the pin)."""
    cache = Path(os.environ.get("DRIFTLOOP_CACHE", Path.home() / ".cache" / "driftloop"))
    venv = cache / "nannyml-0.13"
    python, stamp = venv / "bin" / "python", venv / ".driftloop-pin"
    want = " ".join([NANNYML, *NANNYML_EXTRAS])
    if python.is_file() and stamp.is_file() and stamp.read_text() == want:
        return python
    print(f"creating {venv} with {want} (once; about 2 GB)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", NANNYML, *NANNYML_EXTRAS], check=True)
    stamp.write_text(want)
    return python


# ---- scenarios: a model, a labelled reference, windows ----------------------------------------------------


def mixture(rows, rng, move=0.0):
    import numpy as np

    component = rng.integers(0, 2, rows)
    x = np.array([[-3.0, 0.0], [3.0, 0.0]])[component] * (1 - move) + rng.normal(size=(rows, 2))
    return x, (rng.random(rows) < 1 / (1 + np.exp(-x[:, 0]))).astype(int)


def mixture_scenario(seed, rows, reference_rows, sharpen=1.0):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    model = LogisticRegression().fit(*mixture(5000, rng))

    def logged(x, y):
        p = model.predict_proba(x)[:, 1]
        p = 1 / (1 + np.exp(-sharpen * np.log(p / (1 - p))))
        return table(np.column_stack([1 - p, p]), np.array(["0", "1"]), y.astype(str))

    reference = logged(*mixture(reference_rows, rng))
    windows = [logged(*mixture(rows, rng, move)) for move in MIXTURE_MOVES]
    return reference, windows, [f"move {m:.1f}" for m in MIXTURE_MOVES]


def digits_scenario(seed, rows, reference_rows):
    import numpy as np
    from scipy import ndimage
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    images, digits = load_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8) / 16
    rng = np.random.default_rng(seed)
    train, held_reference, test = np.split(rng.permutation(len(digits)), [900, 1350])

    def rotated(pool, low, high, count):
        chosen = rng.choice(pool, count)
        angles = rng.uniform(low, high, count) * rng.choice([-1, 1], count)
        x = np.stack([ndimage.rotate(images[i], a, reshape=False, order=1) for i, a in zip(chosen, angles, strict=True)])
        return x.reshape(count, -1), digits[chosen]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPClassifier((32,), alpha=1e-3, max_iter=150, random_state=seed).fit(*rotated(train, 0, 45, 2700))
    classes = model.classes_.astype(str)

    def logged(x, y):
        return table(model.predict_proba(x), classes, y.astype(str))

    reference = logged(*rotated(held_reference, 0, 45, reference_rows))
    windows = [logged(*rotated(test, low, high, rows)) for low, high in DIGIT_ANGLES]
    return reference, windows, [f"{low}-{high} deg" for low, high in DIGIT_ANGLES]


def table(probabilities, classes, truth):
    """The columns both estimators read: y_true, y_pred and p_<class>."""
    import pandas as pd

    frame = pd.DataFrame({f"p_{c}": probabilities[:, i] for i, c in enumerate(classes)})
    frame["y_pred"] = classes[probabilities.argmax(axis=1)]
    frame["y_true"] = truth
    return frame


def realised(frame, classes):
    from sklearn.metrics import f1_score, roc_auc_score

    metrics = {"accuracy": float((frame.y_true == frame.y_pred).mean())}
    if len(classes) == 2:
        positive = frame.y_true == classes[1]
        metrics["roc_auc"] = float(roc_auc_score(positive, frame[f"p_{classes[1]}"]))
        metrics["f1"] = float(f1_score(positive, frame.y_pred == classes[1]))
    return metrics


def run_driftloop(reference, windows):
    from driftloop.drift.estimation import ConfidenceEstimator

    windows = [window.drop(columns="y_true") for window in windows]
    start, cpu = time.perf_counter(), time.process_time()
    estimator = ConfidenceEstimator(prediction="y_pred", target="y_true", prefix="p_").fit(reference)
    estimates = [estimator.estimate(window) for window in windows]
    seconds, wall = time.process_time() - cpu, time.perf_counter() - start
    return seconds, wall, [{m.metric: m.value for m in e.metrics} for e in estimates]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows per window")
    parser.add_argument("--reference-rows", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "estimation_vs_nannyml.json")
    args = parser.parse_args()
    python = nannyml_python()

    import numpy as np
    import pandas as pd

    scenarios = {
        "mixture": lambda seed: mixture_scenario(seed, args.rows, args.reference_rows),
        "mixture-overconfident": lambda seed: mixture_scenario(seed, args.rows, args.reference_rows, sharpen=4.0),
        "digits": lambda seed: digits_scenario(seed, args.rows, args.reference_rows),
    }
    rows, ours_seconds, ours_wall = [], 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="estimation-vs-nannyml-") as folder:
        manifest = {"runs": []}
        for scenario, build in scenarios.items():
            for seed in range(args.seeds):
                reference, windows, shifts = build(seed)
                classes = sorted(c[2:] for c in reference.columns if c.startswith("p_"))
                name = f"{scenario}-{seed}"
                metrics = ["accuracy", "roc_auc", "f1"] if len(classes) == 2 else ["accuracy"]
                reference.to_parquet(f"{folder}/{name}-reference.parquet")
                pd.concat(windows, ignore_index=True).drop(columns="y_true").to_parquet(f"{folder}/{name}-analysis.parquet")
                manifest["runs"].append({"name": name, "classes": classes, "metrics": metrics, "chunk_rows": args.rows})
                seconds, wall, estimates = run_driftloop(reference, windows)
                ours_seconds += seconds
                ours_wall += wall
                for shift, window, estimate in zip(shifts, windows, estimates, strict=True):
                    rows.append({"run": name, "scenario": scenario, "seed": seed, "shift": shift,
                                 "realised": realised(window, classes), "driftloop": estimate})
                print(f"{name}: driftloop {seconds:.3f} s", file=sys.stderr)
        Path(folder, "manifest.json").write_text(json.dumps(manifest))
        environment = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
        subprocess.run([str(python), "-c", NANNYML_SCRIPT, folder], check=True, env=environment)
        nannyml = json.loads(Path(folder, "nannyml.json").read_text())
    theirs_seconds = sum(run["seconds"] for run in nannyml["runs"].values())
    theirs_wall = sum(run["wall_seconds"] for run in nannyml["runs"].values())
    for name, run in nannyml["runs"].items():
        print(f"{name}: nannyml {run['seconds']:.3f} s", file=sys.stderr)
    position = {}
    for row in rows:
        index = position[row["run"]] = position.get(row["run"], -1) + 1
        run = nannyml["runs"][row["run"]]
        row["nannyml"] = {m: run[m][index] for m in row["driftloop"]}

    def mae(side, metric="accuracy", scenario=None):
        errors = [abs(r[side][metric] - r["realised"][metric]) for r in rows
                  if metric in r[side] and (scenario is None or r["scenario"] == scenario)]
        return float(np.mean(errors))

    print(f"\n{'scenario':24s} {'shift':>10s} {'realised':>9s} {'driftloop':>10s} {'nannyml':>9s}   (accuracy, mean over seeds)")
    frame = pd.DataFrame([{"scenario": r["scenario"], "shift": r["shift"], "realised": r["realised"]["accuracy"],
                           "driftloop": r["driftloop"]["accuracy"], "nannyml": r["nannyml"]["accuracy"]} for r in rows])
    for (scenario, shift), group in frame.groupby(["scenario", "shift"], sort=False):
        print(f"{scenario:24s} {shift:>10s} {group.realised.mean():9.3f} {group.driftloop.mean():10.3f} {group.nannyml.mean():9.3f}")
    print(f"\n{'MAE against realised':32s} {'driftloop':>10s} {'nannyml':>9s}")
    for scenario in scenarios:
        for metric in ("accuracy", "roc_auc", "f1"):
            if any(metric in r["driftloop"] for r in rows if r["scenario"] == scenario):
                print(f"{scenario + ' ' + metric:32s} {mae('driftloop', metric, scenario):10.4f} "
                      f"{mae('nannyml', metric, scenario):9.4f}")
    results = {
        "mae_driftloop": mae("driftloop"),
        "mae_nannyml": mae("nannyml"),
        "seconds_driftloop": ours_seconds,
        "seconds_nannyml": theirs_seconds,
    }
    print(f"\naccuracy MAE: driftloop {results['mae_driftloop']:.4f}, nannyml {results['mae_nannyml']:.4f} "
          f"(target: driftloop <= nannyml + 0.01)")
    print(f"CPU time (fit + estimate, {len(manifest['runs'])} runs of {len(MIXTURE_MOVES)} windows of {args.rows} rows, "
          f"references of {args.reference_rows}): driftloop {ours_seconds:.2f} s, nannyml {theirs_seconds:.2f} s, "
          f"{theirs_seconds / ours_seconds:.1f}x faster (target >= 10x)")
    print(f"wall time: driftloop {ours_wall:.2f} s, nannyml {theirs_wall:.2f} s ({theirs_wall / ours_wall:.1f}x); "
          f"nannyml's import: {nannyml['import_seconds']:.1f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
