"""Detection delay, false alarms and missed drifts of the sequential detectors, beside River's.

Streams (each 10,000 samples, one drift at 5,000):

* ``sea`` / ``agrawal``: River's ``ConceptDriftStream`` (width 60) from one concept
  to another; a scikit-learn model trained on 5,000 samples of the first concept
  (another seed), then frozen, turns each sample into an error bit (1 = wrong).
* ``gauss-0.5sigma`` / ``gauss-1sigma``: N(0, 1) then N(delta, 1), fed as raw values.

For each stream and detector, over 30 seeds (River's KSWIN over the first 5: it
runs a scipy K-S test per sample): the median delay from the drift to the first
alarm within ``HORIZON`` samples after it, false alarms per 10,000 samples (alarms
before the drift or later than ``HORIZON`` after it, over those samples), and the
drifts missed (no alarm within ``HORIZON``). Every detector sees the same streams.

Run: ``python benchmarks/detection_delay.py`` (about 3 minutes on 2 cores);
writes ``benchmarks/results/detection_delay.json``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
from river import drift as river_drift
from river.datasets import synth
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from driftloop.drift.sequential import ADWIN, CUSUM, DDM, PageHinkley

N, DRIFT, WIDTH, HORIZON = 10_000, 5_000, 60, 1_000
SEEDS = range(30)
KSWIN_SEEDS = range(5)
CUSUM_RATE = 1.0  # false alarms per 10k, the calibrated CUSUM's setting
OUT = Path(__file__).parent / "results" / "detection_delay.json"


def _xy(stream, n):
    rows = list(stream.take(n))
    return np.array([[x[k] for k in sorted(x)] for x, _ in rows], dtype=float), np.array([int(y) for _, y in rows])


def error_stream(name: str, seed: int, model) -> list[int]:
    if name == "sea":
        stream = synth.ConceptDriftStream(synth.SEA(variant=0, noise=0.1, seed=seed), synth.SEA(variant=3, noise=0.1, seed=seed + 1000),
                                          position=DRIFT, width=WIDTH, seed=seed)
    else:
        stream = synth.ConceptDriftStream(synth.Agrawal(classification_function=0, seed=seed),
                                          synth.Agrawal(classification_function=2, seed=seed + 1000),
                                          position=DRIFT, width=WIDTH, seed=seed)
    x, y = _xy(stream, N)
    return (model.predict(x) != y).astype(int).tolist()


def frozen_model(name: str):
    if name == "sea":
        x, y = _xy(synth.SEA(variant=0, noise=0.1, seed=99_999), 5_000)
        return LogisticRegression().fit(x, y)
    x, y = _xy(synth.Agrawal(classification_function=0, seed=99_999), 5_000)
    return DecisionTreeClassifier(max_depth=8, random_state=0).fit(x, y)


def gauss_stream(shift: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(0, 1, DRIFT), rng.normal(shift, 1, N - DRIFT)].tolist()


def river_alarms(detector, xs) -> list[int]:
    out = []
    for i, x in enumerate(xs):
        detector.update(x)
        if detector.drift_detected:
            out.append(i)
    return out


def detectors(binary: bool) -> dict:
    """name -> (factory(seed), is_river). Error bits feed every detector as 1 = error."""
    ph_params = {} if binary else {"delta": 0.5, "threshold": 50.0}  # ours: scaled to unit-variance scores
    found = {
        "driftloop.ADWIN": (lambda s: ADWIN(), False),
        "driftloop.PageHinkley": (lambda s: PageHinkley(**ph_params), False),
        "driftloop.CUSUM(1/10k)": (lambda s: CUSUM(CUSUM_RATE, mode="up" if binary else "both"), False),
        "river.ADWIN": (lambda s: river_drift.ADWIN(), True),
        "river.PageHinkley": (lambda s: river_drift.PageHinkley(), True),
        "river.KSWIN": (lambda s: river_drift.KSWIN(seed=s), True),
    }
    if binary:
        found["driftloop.DDM"] = (lambda s: DDM(), False)
    return found


def score(alarm_lists: list[list[int]], onset: int) -> dict:
    """Delay from `onset`, the first sample of the new concept (River's streams blend it in from
    DRIFT - WIDTH/2); alarms before it or later than HORIZON after DRIFT are false alarms."""
    delays, false_alarms, missed = [], 0, 0
    for alarms in alarm_lists:
        inside = [a - onset for a in alarms if onset <= a <= DRIFT + HORIZON]
        if inside:
            delays.append(inside[0])
        else:
            missed += 1
        false_alarms += sum(a < onset or a > DRIFT + HORIZON for a in alarms)
    counted = len(alarm_lists) * (N - HORIZON - 1)
    return {
        "median_delay": statistics.median(delays) if delays else None,
        "false_alarms_per_10k": round(false_alarms / counted * 10_000, 3),
        "missed": missed,
        "seeds": len(alarm_lists),
    }


def main() -> list[dict]:
    start = time.perf_counter()
    streams = {}
    for name in ("sea", "agrawal"):
        model = frozen_model(name)
        streams[name] = (True, [error_stream(name, seed, model) for seed in SEEDS])
        pre = np.mean([np.mean(xs[:DRIFT]) for xs in streams[name][1]])
        post = np.mean([np.mean(xs[DRIFT + WIDTH:]) for xs in streams[name][1]])
        print(f"{name}: error rate {pre:.3f} -> {post:.3f}")
    for shift in (0.5, 1.0):
        streams[f"gauss-{shift:g}sigma"] = (False, [gauss_stream(shift, seed) for seed in SEEDS])
    rows = []
    for stream, (binary, xss) in streams.items():
        for detector, (factory, is_river) in detectors(binary).items():
            seeds = KSWIN_SEEDS if detector == "river.KSWIN" else SEEDS
            t0 = time.perf_counter()
            alarm_lists = [river_alarms(factory(s), xss[s]) if is_river else factory(s).update_many(xss[s]) for s in seeds]
            onset = DRIFT - WIDTH // 2 if binary else DRIFT
            row = {"detector": detector, "stream": stream, **score(alarm_lists, onset),
                   "us_per_sample": round((time.perf_counter() - t0) / (len(seeds) * N) * 1e6, 2)}
            rows.append(row)
            print(row)
    summary = {}
    for stream in streams:
        here = {r["detector"]: r for r in rows if r["stream"] == stream}
        base = here["river.ADWIN"]
        winners = [
            d for d, r in here.items()
            if d.startswith("driftloop.") and r["median_delay"] is not None
            and r["false_alarms_per_10k"] <= base["false_alarms_per_10k"]
            and (base["median_delay"] is None or r["median_delay"] <= base["median_delay"])
        ]
        cusum = here["driftloop.CUSUM(1/10k)"]["false_alarms_per_10k"]
        summary[stream] = {
            "driftloop_beats_river_adwin": bool(winners), "by": winners,
            "cusum_rate_within_2x": CUSUM_RATE / 2 <= cusum <= CUSUM_RATE * 2, "cusum_measured_per_10k": cusum,
        }
    document = {"rows": rows, "summary": summary,
                "setup": {"n": N, "drift_at": DRIFT, "width": WIDTH, "horizon": HORIZON,
                          "seeds": len(SEEDS), "kswin_seeds": len(KSWIN_SEEDS), "cusum_setting_per_10k": CUSUM_RATE,
                          "seconds": round(time.perf_counter() - start, 1)}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return rows


if __name__ == "__main__":
    main()
