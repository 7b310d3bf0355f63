"""The domain-classifier drift test: time, false-alarm rate and power, against per-feature KS.

Baseline, on the same data in the same run: a two-sample Kolmogorov-Smirnov test per
feature (scipy) with a Bonferroni correction, the univariate detector Rabanser et
al. (2019) found hard to beat. (Alibi Detect's MMD test, the other obvious
baseline, takes about six minutes and 5.5 GB at 10k x 10k rows, too long to run
here over seeds.)

- time: 10k reference vs 10k current rows x 20 features, median of --repeats runs;
- false-alarm rate: both windows from N(0, I), over --seeds seeds, at --rows rows a side,
  and at 1,000 rows a side over 4 x --seeds seeds (a finer look at calibration);
- power: the current window shifted by 0.2 sigma in 3 of the 20 features, over --seeds
  seeds, at --rows rows a side and at smaller windows (where power falls below 1);
- power on a change no univariate test can see: two features of the current window
  correlated (rho 0.5), every marginal unchanged, 2,000 rows a side.

Single process, one OpenMP thread (the test's default); prints progress.

    ~/.cache/driftloop/venv/bin/python benchmarks/multivariate.py            # about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import ks_2samp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from driftloop.drift.multivariate import DomainClassifierTest  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "multivariate.json"
FEATURES = 20
SHIFTED = (4, 11, 17)
SHIFT = 0.2
CORRELATED = (4, 11)
RHO = 0.5


def windows(seed: int, rows: int, shift: float, rho: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """N(0, I) windows; the current one shifted by `shift` in SHIFTED and with CORRELATED correlated by `rho`."""
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(rows, FEATURES))
    current = rng.normal(size=(rows, FEATURES))
    current[:, list(SHIFTED)] += shift
    first, second = CORRELATED
    current[:, second] = rho * current[:, first] + np.sqrt(1.0 - rho**2) * current[:, second]
    return reference, current


def ks_bonferroni(reference: np.ndarray, current: np.ndarray, alpha: float) -> bool:
    """Baseline: drift when any feature's KS p-value is below alpha / features."""
    p_values = [ks_2samp(reference[:, j], current[:, j]).pvalue for j in range(reference.shape[1])]
    return min(p_values) < alpha / reference.shape[1]


def rates(label: str, rows: int, shift: float, seeds: range, alpha: float, rho: float = 0.0) -> dict:
    """Share of seeds flagged by each detector, and whether the classifier's top features were the changed ones."""
    changed = {f"x{j}" for j in (CORRELATED if rho else SHIFTED)}
    flagged = baseline_flagged = top_right = 0
    seconds = []
    for done, seed in enumerate(seeds, 1):
        reference, current = windows(seed, rows, shift, rho)
        start = time.perf_counter()
        result = DomainClassifierTest(alpha=alpha, seed=seed).test(reference, current)
        seconds.append(time.perf_counter() - start)
        flagged += result.drifted
        baseline_flagged += ks_bonferroni(reference, current, alpha)
        top_right += {name for name, _ in result.feature_importance[: len(changed)]} == changed
        if done % 10 == 0 or done == len(seeds):
            print(
                f"  {label} {rows}x{rows}: {done}/{len(seeds)} seeds, flagged {flagged}, "
                f"ks-bonferroni {baseline_flagged}, {statistics.median(seconds):.2f} s/test",
                flush=True,
            )
    n = len(seeds)
    return {
        "rows": rows,
        "seeds": n,
        "rate": flagged / n,
        "baseline_rate": baseline_flagged / n,
        "top_exact_rate": top_right / n,
        "median_seconds": round(statistics.median(seconds), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--rows", type=int, default=10_000, help="rows per window for the headline rates")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs at 10k x 10k")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    began = time.perf_counter()

    print("time: 10k vs 10k x 20 features", flush=True)
    reference, current = windows(10_000, 10_000, 0.0)
    timings, baseline_timings = [], []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        DomainClassifierTest(alpha=args.alpha, seed=repeat).test(reference, current)
        timings.append(time.perf_counter() - start)
        start = time.perf_counter()
        ks_bonferroni(reference, current, args.alpha)
        baseline_timings.append(time.perf_counter() - start)
        print(f"  run {repeat + 1}: {timings[-1]:.2f} s (ks-bonferroni {baseline_timings[-1]:.3f} s)", flush=True)

    print("false alarms: one distribution", flush=True)
    null = rates("null", args.rows, 0.0, range(args.seeds), args.alpha)
    null_small = rates("null", 1_000, 0.0, range(100_000, 100_000 + 4 * args.seeds), args.alpha)

    print(f"power: {SHIFT} sigma shift in 3 of {FEATURES} features", flush=True)
    power = rates("shift", args.rows, SHIFT, range(1_000, 1_000 + args.seeds), args.alpha)
    power_by_rows = [
        rates("shift", rows, SHIFT, range(2_000 + rows, 2_000 + rows + args.seeds), args.alpha)
        for rows in (250, 500, 1_000)
    ]
    print(f"power: correlation {RHO} between two features, marginals unchanged", flush=True)
    correlation = rates("correlation", 2_000, 0.0, range(3_000, 3_000 + args.seeds), args.alpha, rho=RHO)

    document = {
        "seconds_10k": round(statistics.median(timings), 3),
        "false_alarm_rate": null["rate"],
        "power": power["rate"],
        "alpha": args.alpha,
        "seeds": args.seeds,
        "rows": args.rows,
        "features": FEATURES,
        "shift_sigma": SHIFT,
        "shifted_features": len(SHIFTED),
        "top3_exact_rate": power["top_exact_rate"],
        "seconds_10k_runs": [round(t, 3) for t in timings],
        "false_alarm_rate_1k": null_small["rate"],
        "false_alarm_seeds_1k": null_small["seeds"],
        "power_by_rows": {str(r["rows"]): r["rate"] for r in power_by_rows},
        "top3_exact_rate_by_rows": {str(r["rows"]): r["top_exact_rate"] for r in power_by_rows},
        "power_correlation_2k": correlation["rate"],
        "top2_exact_rate_correlation_2k": correlation["top_exact_rate"],
        "baseline": "ks-bonferroni (scipy ks_2samp per feature, alpha / features)",
        "baseline_seconds_10k": round(statistics.median(baseline_timings), 3),
        "baseline_false_alarm_rate": null["baseline_rate"],
        "baseline_false_alarm_rate_1k": null_small["baseline_rate"],
        "baseline_power": power["baseline_rate"],
        "baseline_power_by_rows": {str(r["rows"]): r["baseline_rate"] for r in power_by_rows},
        "baseline_power_correlation_2k": correlation["baseline_rate"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": 1,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
