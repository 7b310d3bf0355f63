"""Window drift: driftloop (stored profile + vectorised statistics) against Evidently's DataDriftPreset report.

Same frames (20 numeric + 5 categorical columns, numpy default_rng; the window
shifts 5 numeric and 2 categorical columns), same methods (Evidently's automatic
choice: with > 1000 reference rows, normed Wasserstein and Jensen–Shannon), same
run, at 100k and 1M rows. Each side runs in its own spawned process, so its peak
RSS (getrusage) is its own:
- driftloop: the profile is built beforehand in another process (timed
  separately) and saved; the timed process loads it, holds only the window and
  scores it, like the monitor does, with the default `WindowDrift()` (`auto`:
  Evidently's choice of statistic, each column decided by its calibrated test);
  the speedups are Evidently's time over this one. Then, in the same process,
  `WindowDrift(method="evidently")` (Evidently's verdicts), timed too, whose
  decisions and scores are compared with Evidently's;
- evidently: holds reference and window, runs `Report([DataDriftPreset()])`.

    ~/.cache/driftloop/venv/bin/python benchmarks/drift_vs_evidently.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NUMERIC, CATEGORICAL = 20, 5
SHIFTED_NUMERIC, SHIFTED_CATEGORICAL = 5, 2
LEVELS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
EVIDENTLY_NAMES = {"Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon",
                   "K-S p_value": "ks", "chi-square p_value": "chisquare_evidently", "Z-test p_value": "z"}


def frame(rows: int, seed: int, shifted: bool):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(NUMERIC):
        shift = 0.5 if shifted and i < SHIFTED_NUMERIC else 0.0
        columns[f"num_{i:02d}"] = rng.normal(shift, 1.0, rows) if i % 2 else rng.lognormal(shift, 0.5, rows)
    mix = np.array([0.3, 0.25, 0.2, 0.12, 0.08, 0.05])
    levels = np.array(LEVELS, dtype=object)
    for i in range(CATEGORICAL):
        p = mix[::-1] if shifted and i < SHIFTED_CATEGORICAL else mix
        columns[f"cat_{i}"] = levels[rng.choice(len(LEVELS), rows, p=p)]
    return pd.DataFrame(columns)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def build_profile(rows: int, folder: str, queue) -> None:
    from driftloop.drift.profile import ReferenceProfile

    reference = frame(rows, 1, shifted=False)
    start = time.perf_counter()
    ReferenceProfile.build(reference).save(folder)
    queue.put({"build_s": time.perf_counter() - start})


def run_driftloop(rows: int, folder: str, queue) -> None:
    from driftloop.drift.profile import ReferenceProfile
    from driftloop.drift.window import WindowDrift

    current = frame(rows, 2, shifted=True)
    start = time.perf_counter()
    profile = ReferenceProfile.load(folder)
    loaded = time.perf_counter()
    default = WindowDrift().score(profile, current)
    done = time.perf_counter()
    verdict = WindowDrift(method="evidently").score(profile, current)
    evidently_mode_s = time.perf_counter() - done
    queue.put({
        "seconds": done - start, "load_s": loaded - start, "score_s": done - loaded, "peak_rss_mb": peak_rss_mb(),
        "evidently_mode_score_s": evidently_mode_s,
        "default_drifted": sorted(r.feature for r in default.results if r.drifted),
        "decisions": {r.feature: (r.method, r.drifted) for r in verdict.results},
        "scores": {r.feature: r.score for r in verdict.results},
    })


def run_evidently(rows: int, queue) -> None:
    import warnings

    warnings.simplefilter("ignore")
    from evidently import Report
    from evidently.presets import DataDriftPreset

    reference, current = frame(rows, 1, shifted=False), frame(rows, 2, shifted=True)
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    metrics = snapshot.dict()["metrics"]
    seconds = time.perf_counter() - start
    decisions, scores = {}, {}
    for metric in metrics:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            method, value, threshold = EVIDENTLY_NAMES[config["method"]], float(metric["value"]), config["threshold"]
            drifted = value <= threshold if method == "ks" else value < threshold if method in ("z", "chisquare_evidently") \
                else value >= threshold
            decisions[config["column"]], scores[config["column"]] = (method, drifted), value
    queue.put({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "decisions": decisions, "scores": scores})


def in_child(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def measure(rows: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        build = in_child(build_profile, rows, folder)
        ours = in_child(run_driftloop, rows, folder)
    theirs = in_child(run_evidently, rows)
    differing = sorted(c for c in theirs["decisions"] if tuple(theirs["decisions"][c]) != tuple(ours["decisions"].get(c, ())))
    max_score_gap = max(abs(ours["scores"][c] - theirs["scores"][c]) for c in theirs["scores"])
    result = {
        "rows": rows, "driftloop_s": ours["seconds"], "driftloop_load_s": ours["load_s"], "driftloop_score_s": ours["score_s"],
        "driftloop_evidently_mode_score_s": ours["evidently_mode_score_s"],
        "profile_build_s": build["build_s"], "evidently_s": theirs["seconds"], "speedup": theirs["seconds"] / ours["seconds"],
        "speedup_evidently_mode": theirs["seconds"] / (ours["load_s"] + ours["evidently_mode_score_s"]),
        "decisions_identical": not differing, "differing_columns": differing, "max_score_gap": max_score_gap,
        "drifted_columns": ours["default_drifted"],
        "drifted_columns_evidently_mode": sorted(c for c, (_, d) in ours["decisions"].items() if d),
        "methods": sorted({m for m, _ in ours["decisions"].values()}),
        "peak_rss_mb": ours["peak_rss_mb"], "evidently_peak_rss_mb": theirs["peak_rss_mb"],
    }
    print(f"{rows:>9,} rows: driftloop (default) {ours['seconds']:.2f} s (load {ours['load_s']:.2f}, profile build "
          f"{build['build_s']:.2f} s beforehand), Evidently {theirs['seconds']:.2f} s -> {result['speedup']:.1f}x; "
          f"evidently mode {ours['evidently_mode_score_s']:.2f} s, decisions identical: {not differing}; "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB vs "
          f"{theirs['peak_rss_mb']:.0f} MB ({ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f})", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "drift_vs_evidently.json")
    args = parser.parse_args()
    runs = {rows: measure(rows) for rows in args.sizes}
    summary: dict = {"baseline": "evidently 0.7.23 Report([DataDriftPreset()])", "runs": list(runs.values())}
    if 100_000 in runs:
        summary["speedup_100k"] = runs[100_000]["speedup"]
    if 1_000_000 in runs:
        summary["speedup_1m"] = runs[1_000_000]["speedup"]
    largest = runs[max(runs)]
    summary["decisions_identical"] = all(r["decisions_identical"] for r in runs.values())
    summary["peak_rss_mb"] = largest["peak_rss_mb"]
    summary["evidently_peak_rss_mb"] = largest["evidently_peak_rss_mb"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
