"""The promotion gate's calibration and speed, against a naive gate and a fixed-n design, on simulated pairs.

Each run is a stream of labelled pairs (champion right?, challenger right?), checked after every
label (the strictest way to use a gate: every label is a look). The champion is right 80% of the
time; the challenger fixes some of its mistakes and makes some of its own: P(champion right,
challenger wrong) = 0.05 and P(champion wrong, challenger right) = 0.05 + delta, so the challenger
is `delta` better (delta = 0: an equal challenger). For each run:
- **gate**: driftloop's promotion test (`GateConfig().promotion_test()`, the mixture SPRT of
  `driftloop.retrain.msprt`, alpha 0.05, margin 0) promotes at the first label where its e-value
  reaches 1/alpha, within `--max-labels` labels (the gate's default max_pairs);
- **naive**: McNemar's exact one-sided test after every label, promoting at the first p <= alpha;
- **fixed-n**: McNemar's test once, at the sample size that gives 80% power at +5 points
  (Connor 1987: n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2, psi the discordance).

It reports the false promotion rate of the gate and of the naive gate (delta = 0), the median
number of labels the gate needs to promote a +3, +5 and +10 point challenger (runs that never
promote count as never), and the fixed-n design's size.

    .venv/bin/python benchmarks/gate_calibration.py --runs 2000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import stats

from driftloop.retrain.gate import GateConfig

RESULTS = Path(__file__).parent / "results" / "gate_calibration.json"
CHAMPION_ONLY_RIGHT = 0.05  # P(champion right, challenger wrong)


def streams(rng: np.random.Generator, delta: float, runs: int, labels: int) -> np.ndarray:
    """(runs, labels) differences D = challenger_right - champion_right in {-1, 0, 1}."""
    u = rng.random((runs, labels))
    wins = CHAMPION_ONLY_RIGHT + delta
    return np.where(u < wins, 1, np.where(u < wins + CHAMPION_ONLY_RIGHT, -1, 0)).astype(np.int8)


def gate_promotions(differences: np.ndarray, config: GateConfig) -> np.ndarray:
    """The label at which the gate first promotes, per run (inf: never)."""
    test = config.promotion_test()
    out = np.full(len(differences), np.inf)
    for run, stream in enumerate(differences):
        crossed = np.flatnonzero(test.log_evalue_path(stream) >= test.log_threshold)
        if len(crossed):
            out[run] = crossed[0] + 1
    return out


def naive_promotions(differences: np.ndarray, alpha: float) -> np.ndarray:
    """The label at which McNemar's exact one-sided test, run after every label, first has p <= alpha."""
    out = np.full(len(differences), np.inf)
    for run, stream in enumerate(differences):
        wins, losses = np.cumsum(stream == 1), np.cumsum(stream == -1)
        p = stats.binom.sf(wins - 1, wins + losses, 0.5)  # P(X >= wins); 1 where there is no discordant pair
        crossed = np.flatnonzero(p <= alpha)
        if len(crossed):
            out[run] = crossed[0] + 1
    return out


def fixed_n(delta: float, alpha: float, power: float = 0.8) -> int:
    """McNemar's one-sided fixed sample size for an accuracy difference `delta` (Connor 1987)."""
    psi = 2 * CHAMPION_ONLY_RIGHT + delta
    z_a, z_b = stats.norm.ppf(1 - alpha), stats.norm.ppf(power)
    return int(np.ceil((z_a * np.sqrt(psi) + z_b * np.sqrt(psi - delta**2)) ** 2 / delta**2))


def fixed_n_power(rng: np.random.Generator, delta: float, n: int, alpha: float, runs: int) -> float:
    """Share of runs in which McNemar's exact test at n labels promotes (a check of the formula)."""
    d = streams(rng, delta, runs, n)
    wins, losses = (d == 1).sum(axis=1), (d == -1).sum(axis=1)
    return float(np.mean(stats.binom.sf(wins - 1, wins + losses, 0.5) <= alpha))


def finite_or_none(value: float) -> float | None:
    """A median of runs that mostly never promoted is infinite: JSON has no Infinity, so it is null."""
    return value if np.isfinite(value) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="runs per scenario (>= 1000 for the figures)")
    parser.add_argument("--max-labels", type=int, default=GateConfig().max_pairs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args()
    config = GateConfig()
    alpha = config.alpha
    rng = np.random.default_rng(args.seed)
    began = time.perf_counter()

    print(f"equal challenger: {args.runs} runs of up to {args.max_labels} labels, checked after every label", flush=True)
    equal = streams(rng, 0.0, args.runs, args.max_labels)
    false_promotions = np.isfinite(gate_promotions(equal, config)).mean()
    naive_false_promotions = np.isfinite(naive_promotions(equal, alpha)).mean()
    del equal
    print(f"  false promotion rate: gate {false_promotions:.4f}, naive McNemar after every label "
          f"{naive_false_promotions:.4f} (alpha {alpha})", flush=True)

    medians, promoted = {}, {}
    for points in (3, 5, 10):
        delta = points / 100
        labels = gate_promotions(streams(rng, delta, args.runs, args.max_labels), config)
        medians[points], promoted[points] = float(np.median(labels)), float(np.isfinite(labels).mean())
        print(f"  +{points} points: median {medians[points]:.0f} labels to promotion, "
              f"{promoted[points]:.1%} promoted within {args.max_labels}", flush=True)
    n_fixed = fixed_n(0.05, alpha)
    power = fixed_n_power(rng, 0.05, n_fixed, alpha, args.runs)
    ratio = medians[5] / n_fixed
    print(f"  fixed-n McNemar for +5 points at 80% power: {n_fixed} labels (simulated power {power:.3f}); "
          f"gate median / fixed n = {ratio:.2f}", flush=True)

    figures = {
        "false_promotion_rate": round(float(false_promotions), 4),
        "naive_false_promotion_rate": round(float(naive_false_promotions), 4),
        "median_labels_to_promote_5pt": finite_or_none(medians[5]),
        "fixed_n_labels_5pt": n_fixed,
        "median_labels_to_promote_3pt": finite_or_none(medians[3]),
        "median_labels_to_promote_10pt": finite_or_none(medians[10]),
        "ratio_median_to_fixed_n_5pt": finite_or_none(round(ratio, 3)),
        "promoted_within_max_labels": {f"{points}pt": promoted[points] for points in promoted},
        "fixed_n_simulated_power_5pt": round(power, 4),
        "alpha": alpha,
        "runs_per_scenario": args.runs,
        "max_labels": args.max_labels,
        "seconds": round(time.perf_counter() - began, 1),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()
