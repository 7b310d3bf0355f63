"""False alarms without drift, and power on a shift, by reference size x window size: auto, evidently, Evidently.

The promise of `WindowDrift(method="auto")` is a false-alarm rate of alpha per column whatever the two sizes; Evidently's
default (and driftloop's `method="evidently"`, which reproduces it) uses fixed distance thresholds above 1,000
reference rows, which ignore the window's size. This measures both on the same data in the same run, and the price
of calibration: the power of `auto` against Evidently's on shifted windows.

Data: a reference dataset of 2 numeric columns (N(0, 1)) and 2 categorical ones (7 levels, shares 0.30 ... 0.05),
at 1,000 / 10,000 / 100,000 rows; windows of 30 / 100 / 1,000 rows from the same distributions (no drift), or with
both numeric columns shifted by 0.2 or 0.5 standard deviations (power). Per reference size, R references (50, 20,
10: a small reference's own noise matters, so more of them) share the draws of every window size; each draw is a
new window. False alarms are counted per column (numeric and categorical apart) and per dataset (Evidently's
DataDriftPreset rule: drift when at least half of the 4 columns drift).

- auto: `WindowDrift()` on the profile (calibrated tests at alpha = 0.05).
- evidently: `WindowDrift(method="evidently")` (Evidently's verdicts, reproduced from the profile).
- Evidently itself (0.7.23): per column, the stat test its DataDriftPreset picks (`get_stattest(reference, current,
  column_type, None)`) called on the same pandas columns, as the preset calls it; dataset share >= 0.5. It runs on
  the first `--evidently-draws` windows of each cell (500; its tests sort the whole reference on every call, which
  at 100,000 rows takes most of the run); `evidently` gives the same verdicts number for number on all of them.

Writes benchmarks/results/calibration.json: `max_false_alarm_rate_auto` (the largest per-column cell of auto's table;
target <= 1.5 alpha), `max_false_alarm_rate_evidently` (Evidently's own largest), `alpha`, and every cell.

    ~/.cache/driftloop/venv/bin/python benchmarks/calibration.py                       # 2,000 draws a cell
    ~/.cache/driftloop/venv/bin/python benchmarks/calibration.py --draws 60 --power-draws 20 --evidently-draws 20 \
        --output /tmp/c.json                                                            # a quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from driftloop.drift.profile import ReferenceProfile  # noqa: E402
from driftloop.drift.window import WindowDrift  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "calibration.json"
ALPHA = 0.05
REFERENCES = {1_000: 50, 10_000: 20, 100_000: 10}
WINDOWS = (30, 100, 1_000)
SHIFTS = (0.2, 0.5)
LEVELS = np.array(["a", "b", "c", "d", "e", "f", "g"], dtype=object)
MIX = np.array([0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05])
NUMERIC, CATEGORICAL = ("x1", "x2"), ("c1", "c2")
MODES = ("auto", "evidently", "Evidently")


def frame(rows: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    columns = {name: rng.normal(shift, 1.0, rows) for name in NUMERIC}
    columns |= {name: LEVELS[rng.choice(len(LEVELS), rows, p=MIX)] for name in CATEGORICAL}
    return pd.DataFrame(columns)


class EvidentlyColumns:
    """Evidently's own per-column verdict: the stat test its preset picks, called as the preset calls it."""

    def __init__(self) -> None:
        warnings.simplefilter("ignore")
        from evidently.legacy.calculations.stattests import registry  # noqa: F401  (registers the tests)
        from evidently.legacy.calculations.stattests.registry import get_stattest
        from evidently.legacy.core import ColumnType

        self.get_stattest = get_stattest
        self.types = {name: ColumnType.Numerical for name in NUMERIC} | {name: ColumnType.Categorical for name in CATEGORICAL}

    def drifted(self, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, bool]:
        verdicts = {}
        for column, column_type in self.types.items():
            test = self.get_stattest(reference[column], current[column], column_type, None)
            verdicts[column] = bool(test(reference[column], current[column], column_type, None).drifted)
        return verdicts


def verdicts(mode: str, scorers: dict, profile, reference: pd.DataFrame, window: pd.DataFrame) -> dict[str, bool]:
    if mode == "Evidently":
        return scorers[mode].drifted(reference, window)
    return {r.feature: r.drifted for r in scorers[mode].score(profile, window).results}


def measure(draws: int, power_draws: int, evidently_draws: int, seed: int) -> dict:
    scorers = {"auto": WindowDrift(), "evidently": WindowDrift(method="evidently"), "Evidently": EvidentlyColumns()}
    cells = []
    for n, references in REFERENCES.items():
        rng = np.random.default_rng(seed + n)
        start = time.perf_counter()
        frames = [frame(n, rng) for _ in range(references)]
        profiles = [ReferenceProfile.build(f) for f in frames]
        for profile in profiles:  # the precomputed null, as a saved profile carries it
            for name in NUMERIC:
                profile.features[name].null()
        build_s = time.perf_counter() - start
        for m in WINDOWS:
            start = time.perf_counter()
            per_reference = max(1, draws // references)
            alarms = {mode: {"numeric": 0, "categorical": 0, "dataset": 0, "draws": 0} for mode in MODES}
            for _ in range(per_reference):  # round by round over the references: Evidently's draws stay spread
                for reference, profile in zip(frames, profiles, strict=True):
                    window = frame(m, rng)
                    for mode in MODES:
                        if mode == "Evidently" and alarms[mode]["draws"] >= evidently_draws:
                            continue
                        flags = verdicts(mode, scorers, profile, reference, window)
                        alarms[mode]["numeric"] += sum(flags[c] for c in NUMERIC)
                        alarms[mode]["categorical"] += sum(flags[c] for c in CATEGORICAL)
                        alarms[mode]["dataset"] += sum(flags.values()) >= len(flags) / 2
                        alarms[mode]["draws"] += 1
            false_alarms = {
                mode: {
                    "numeric": counts["numeric"] / (counts["draws"] * len(NUMERIC)),
                    "categorical": counts["categorical"] / (counts["draws"] * len(CATEGORICAL)),
                    "dataset": counts["dataset"] / counts["draws"],
                    "draws": counts["draws"],
                }
                for mode, counts in alarms.items()
            }
            power = {}
            per_reference_power = max(1, power_draws // references)
            for shift in SHIFTS:
                hits = {mode: [0, 0] for mode in ("auto", "Evidently")}
                for _ in range(per_reference_power):
                    for reference, profile in zip(frames, profiles, strict=True):
                        window = frame(m, rng, shift=shift)
                        for mode, tally in hits.items():
                            if mode == "Evidently" and tally[1] >= evidently_draws // 2:
                                continue
                            flags = verdicts(mode, scorers, profile, reference, window)
                            tally[0] += sum(flags[c] for c in NUMERIC)
                            tally[1] += 1
                power[f"{shift}sigma"] = {mode: h / (d * len(NUMERIC)) for mode, (h, d) in hits.items()}
                power[f"{shift}sigma"]["draws"] = {mode: d for mode, (_, d) in hits.items()}
            cell = {
                "reference_rows": n, "window_rows": m, "references": references,
                "false_alarm_rate": false_alarms, "power_numeric": power,
                "seconds": round(time.perf_counter() - start, 1), "reference_build_s": round(build_s, 1),
            }
            cells.append(cell)
            fa = {mode: f"{v['numeric']:.3f}/{v['categorical']:.3f}/{v['dataset']:.3f} ({v['draws']})"
                  for mode, v in false_alarms.items()}
            pw = {s: f"{v['auto']:.2f} vs {v['Evidently']:.2f}" for s, v in power.items()}
            print(f"n={n:>7,} m={m:>5}: false alarms numeric/categorical/dataset {fa}; power auto vs Evidently {pw} "
                  f"({cell['seconds']} s)", flush=True)
    return {"cells": cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=2_000, help="no-drift windows per cell")
    parser.add_argument("--power-draws", type=int, default=500, help="shifted windows per cell and shift")
    parser.add_argument("--evidently-draws", type=int, default=500, help="no-drift windows Evidently itself scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    import evidently
    import scipy

    began = time.perf_counter()
    result = measure(args.draws, args.power_draws, args.evidently_draws, args.seed)
    cells = result["cells"]

    def largest(mode: str) -> float:
        return max(max(c["false_alarm_rate"][mode]["numeric"], c["false_alarm_rate"][mode]["categorical"]) for c in cells)

    document = {
        "max_false_alarm_rate_auto": round(largest("auto"), 4),
        "max_false_alarm_rate_evidently": round(largest("Evidently"), 4),
        "alpha": ALPHA,
        "target": "max_false_alarm_rate_auto <= 1.5 alpha",
        "met": largest("auto") <= 1.5 * ALPHA,
        "max_false_alarm_rate_evidently_mode": round(largest("evidently"), 4),
        "cells": cells,
        "draws": args.draws,
        "power_draws": args.power_draws,
        "evidently_draws": args.evidently_draws,
        "seconds": round(time.perf_counter() - began, 1),
        "platform": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                     "pandas": pd.__version__, "evidently": evidently.__version__},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: v for k, v in document.items() if k != "cells"}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
