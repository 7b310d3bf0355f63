"""Selection speed: seconds per query strategy on a pool of 1,000,000 rows x 20 features, budget 1,000.

Targets: under 10 s for the uncertainty strategies (least_confidence, margin,
entropy; random and the balance and duplicate guards around margin are held to
the same), under 60 s for the diversity and hybrid ones (k_center,
cluster_margin, drift_targeted, badge, hybrid). Every registered strategy is timed, each on the
same pool.

Data, generated (numpy default_rng, --seed): pool rows from N(0, I) with the last
20% shifted by 1 sigma in 3 of the 20 features; 100k unshifted reference rows
(for drift_targeted); class probabilities for 10 classes, the softmax of a random
linear model of the features. No labelled rows, so k_center starts from a
seeded random row.

Baselines, on the same pool in the same run:
- random sampling, the floor: each strategy's time is also given as a multiple of it;
- the textbook k-center greedy (Sener & Savarese, 2018) as google/active-learning
  writes it (sampling_methods/kcenter_greedy.py): scikit-learn
  `pairwise_distances` in float64 from each new center to every row, a running
  minimum, argmax. Same standardised feature space (StandardScaler, inside the
  timed run as ours standardises inside its own), same budget, same first center
  (the first draw of `default_rng(0)`, which is ours with seed 0); the run checks
  that both pick the same rows in the same order.

Timing: a fresh strategy (seed 0) per run, `time.perf_counter` around
`select(pool, budget)`, median of --repeats runs (all runs recorded). The naive
k-center ratio comes from --baseline-repeats further pairs of runs, ours then
the naive one, alternated so that both see the same load from other work on the
machine (it varies: one strategy's runs have spread over 4x between runs).

Memory: per strategy, the process's high-water RSS while it ran (Linux: reset
through /proc/self/clear_refs before each run, VmHWM after), the pool included;
the whole run's peak is the largest of those and getrusage's (which a reset
lowers, so getrusage alone would under-report). Threads: the BLAS and OpenMP
pools as threadpoolctl reports them (default: one thread per core; --threads
caps them); the domain classifier inside drift_targeted runs on one OpenMP
thread, its own default. Prints progress.

    ~/.cache/driftloop/venv/bin/python benchmarks/selection_speed.py       # about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import pairwise_distances
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from driftloop.curation.pool import Pool  # noqa: E402
from driftloop.curation.strategies import STRATEGIES, Strategy, make_strategy  # noqa: E402
from driftloop.drift.multivariate import DomainClassifierTest  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "selection_speed.json"
FEATURES = 20
CLASSES = 10
SHIFTED = (3, 8, 15)
SHIFT = 1.0
SHIFTED_SHARE = 0.2
SEED = 0  # every strategy's seed
PEAKS: list[float] = []  # each timed run's high-water RSS (MB), for the whole run's peak

UNCERTAINTY_SECONDS = 10.0
DIVERSITY_SECONDS = 60.0
TARGETS = {  # every registered strategy needs a target here: a new one fails loudly instead of going untimed
    "random": UNCERTAINTY_SECONDS,
    "least_confidence": UNCERTAINTY_SECONDS,
    "margin": UNCERTAINTY_SECONDS,
    "entropy": UNCERTAINTY_SECONDS,
    "k_center": DIVERSITY_SECONDS,
    "cluster_margin": DIVERSITY_SECONDS,
    "drift_targeted": DIVERSITY_SECONDS,
    "badge": DIVERSITY_SECONDS,
    "hybrid": DIVERSITY_SECONDS,
}
GUARDS = (  # (name, balanced, deduplicated) around margin
    ("margin+balanced", True, False),
    ("margin+deduplicated", False, True),
    ("margin+balanced+deduplicated", True, True),
)


def make_pool(rows: int, reference_rows: int, seed: int) -> tuple[Pool, int]:
    """The generated pool (with reference rows) and the index of its first shifted row."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((rows, FEATURES))
    first_shifted = rows - int(SHIFTED_SHARE * rows)
    features[first_shifted:, list(SHIFTED)] += SHIFT
    reference = rng.standard_normal((reference_rows, FEATURES))
    logits = features @ rng.normal(scale=0.5, size=(FEATURES, CLASSES)) + rng.normal(scale=0.5, size=CLASSES)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    pool = Pool(
        ids=np.char.mod("evt-%07d", np.arange(rows)).astype(object),
        features=features,
        feature_names=tuple(f"x{j}" for j in range(FEATURES)),
        probabilities=probabilities,
        classes=tuple(f"class_{c}" for c in range(CLASSES)),
        reference=reference,
    )
    return pool, first_shifted


def row_of(event_id: str) -> int:
    return int(event_id.removeprefix("evt-"))


def builders() -> dict[str, Callable[[], Strategy]]:
    """A fresh strategy per run: every registered one, then the guards around margin."""
    params = {
        "random": {"seed": SEED},
        "k_center": {"seed": SEED},
        "cluster_margin": {"seed": SEED},
        "badge": {"seed": SEED},
        "hybrid": {"seed": SEED},
    }
    unknown = set(STRATEGIES) - set(TARGETS)
    if unknown:
        raise ValueError(f"strategies {sorted(unknown)} have no target: add them to TARGETS")
    built: dict[str, Callable[[], Strategy]] = {}
    for name in STRATEGIES:
        if name == "drift_targeted":
            built[name] = lambda: make_strategy("drift_targeted", domain_scorer=DomainClassifierTest(seed=SEED))
        else:
            built[name] = lambda name=name: make_strategy(name, **params.get(name, {}))
    for name, balanced, deduplicated in GUARDS:
        built[name] = lambda b=balanced, d=deduplicated: make_strategy("margin", balanced=b, deduplicated=d)
    return built


def target_of(name: str) -> float:
    return TARGETS[name.split("+")[0]]


@contextlib.contextmanager
def high_water() -> Iterator[dict]:
    """Peak RSS (MB) of the process while the block ran, where Linux lets us reset it; else None."""
    found: dict = {"peak_rss_mb": None}
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        resettable = True
    except OSError:
        resettable = False
    yield found
    if resettable:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                found["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)


def rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def timed(label: str, run: Callable[[], object], repeats: int) -> tuple[list[float], float | None, object]:
    """Seconds of each run, the highest peak RSS over the runs, and the last run's answer."""
    seconds, peaks, answer = [], [], None
    for repeat in range(repeats):
        gc.collect()
        with high_water() as memory:
            start = time.perf_counter()
            answer = run()
            seconds.append(time.perf_counter() - start)
        peaks.append(memory["peak_rss_mb"])
        print(f"  {label}: run {repeat + 1}/{repeats} {seconds[-1]:.3f} s (peak RSS {peaks[-1]} MB)", flush=True)
    known = [p for p in peaks if p is not None]
    PEAKS.extend(known)
    return seconds, (max(known) if known else None), answer


def naive_k_center(features: np.ndarray, budget: int, first: int) -> tuple[list[int], list[float]]:
    """Textbook k-center greedy (google/active-learning's kcenter_greedy.py): float64 distances from each new center.

    Returns the picks and, for each, its distance to the nearest earlier pick (inf for the first).
    """
    points = StandardScaler().fit_transform(features)
    min_distances = None
    picks, radii = [], []
    for _ in range(budget):
        row = first if min_distances is None else int(np.argmax(min_distances))
        radii.append(np.inf if min_distances is None else float(min_distances[row, 0]))
        picks.append(row)
        distances = pairwise_distances(points, points[[row]], metric="euclidean")
        min_distances = distances if min_distances is None else np.minimum(min_distances, distances)
    return picks, radii


def getrusage_peak_mb() -> float:
    """getrusage's peak RSS; after a VmHWM reset it only covers the time since, hence PEAKS."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kB


def thread_pools() -> list[dict]:
    return [
        {"library": pool["internal_api"], "prefix": pool["prefix"], "num_threads": pool["num_threads"]}
        for pool in threadpool_info()
    ]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="pool rows")
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--budget", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per strategy (median reported)")
    parser.add_argument("--baseline-repeats", type=int, default=3, help="paired runs of k_center and the naive one")
    parser.add_argument("--threads", type=int, default=None, help="cap BLAS and OpenMP threads (default: one per core)")
    parser.add_argument("--only", nargs="*", default=None, help="time only these strategies (names as in the table)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    began = time.perf_counter()
    load_before = os.getloadavg()

    print(f"pool: {args.rows:,} rows x {FEATURES} features, {CLASSES} classes, "
          f"{args.reference_rows:,} reference rows; budget {args.budget:,}", flush=True)
    pool, first_shifted = make_pool(args.rows, args.reference_rows, args.seed)
    pool_rss = rss_mb()
    PEAKS.append(getrusage_peak_mb())  # before any reset of the high-water mark
    print(f"  generated in {time.perf_counter() - began:.1f} s; RSS {pool_rss} MB", flush=True)

    limits = threadpool_limits(limits=args.threads) if args.threads else contextlib.nullcontext()
    with limits:
        threads = thread_pools()
        print(f"thread pools: {[(t['library'], t['num_threads']) for t in threads]}", flush=True)
        strategies = builders()
        names = [n for n in strategies if args.only is None or n in args.only]
        if "random" not in names:
            names.insert(0, "random")  # the floor every ratio is taken against
        rows, answers, medians = [], {}, {}
        for name in names:
            print(f"{name}:", flush=True)
            build = strategies[name]
            seconds, peak, answer = timed(name, lambda build=build: build().select(pool, args.budget), args.repeats)
            answers[name] = answer
            target = target_of(name)
            median = statistics.median(seconds)
            medians[name] = median
            rows.append({
                "strategy": name,
                "seconds": round(median, 4),
                "pool": args.rows,
                "budget": args.budget,
                "target_seconds": target,
                "met": median < target,
                "runs": [round(s, 4) for s in seconds],
                "peak_rss_mb": peak,
            })
        floor = medians["random"]
        for row in rows:
            row["x_random"] = round(medians[row["strategy"]] / floor, 1)

        baselines: dict = {
            "random": {"seconds": round(floor, 6), "note": "uniform draw without replacement: the floor"},
        }
        if "k_center" in answers:
            # Paired and alternated, ours then naive, so that both sides of the ratio see the same load.
            print("k_center against the naive k-center (float64 pairwise_distances per new center):", flush=True)
            first = int(np.random.default_rng(SEED).integers(args.rows))  # KCenterGreedy(seed=SEED)'s first draw
            seconds, paired, peaks = [], [], []
            for repeat in range(args.baseline_repeats):
                run, _, _ = timed(
                    f"k_center (pair {repeat + 1})", lambda: strategies["k_center"]().select(pool, args.budget), 1
                )
                paired += run
                run, peak, (naive_picks, naive_radii) = timed(
                    f"naive k_center (pair {repeat + 1})", lambda: naive_k_center(pool.features, args.budget, first), 1
                )
                seconds += run
                peaks.append(peak)
            peak = max((p for p in peaks if p is not None), default=None)
            ours = [row_of(i) for i in answers["k_center"].ids]
            ours_radii = np.array(answers["k_center"].scores[1:])
            same_prefix = next((k for k, (a, b) in enumerate(zip(ours, naive_picks, strict=True)) if a != b), len(ours))
            ours_seconds = statistics.median(paired)
            naive_seconds = statistics.median(seconds)
            baselines["k_center_naive"] = {
                "implementation": (
                    "textbook k-center greedy after google/active-learning sampling_methods/kcenter_greedy.py: "
                    "StandardScaler, then sklearn pairwise_distances (float64) from each new center to every row, "
                    "running minimum, argmax"
                ),
                "seconds": round(naive_seconds, 3),
                "runs": [round(s, 3) for s in seconds],
                "picks": args.budget,
                "pool": args.rows,
                "peak_rss_mb": peak,
                "ours_seconds": round(ours_seconds, 4),
                "ours_runs": [round(s, 3) for s in paired],
                "speedup_of_ours": round(naive_seconds / ours_seconds, 2),
                "first_center": first,
                "same_first_center": ours[0] == first,
                "same_picks_in_order": same_prefix == len(ours),
                "identical_prefix": same_prefix,
                "shared_picks": len(set(ours) & set(naive_picks)),
                "max_radius_difference": float(np.max(np.abs(ours_radii - np.array(naive_radii[1:])))),
            }
            check = baselines["k_center_naive"]
            print(
                f"  ours {ours_seconds:.2f} s vs naive {naive_seconds:.2f} s: {check['speedup_of_ours']}x; "
                f"same first center {check['same_first_center']}; same picks in order "
                f"{check['same_picks_in_order']} (first {same_prefix} identical, {check['shared_picks']} shared); "
                f"largest radius difference {check['max_radius_difference']:.2e}",
                flush=True,
            )
        if "drift_targeted" in answers:
            from_shifted = np.mean([row_of(i) >= first_shifted for i in answers["drift_targeted"].ids])
            baselines["drift_targeted_picks_from_shifted_share"] = round(float(from_shifted), 3)
            print(f"  sanity: drift_targeted took {from_shifted:.0%} of its picks from the shifted "
                  f"{SHIFTED_SHARE:.0%} of the pool", flush=True)

    print("\nstrategy                         seconds  target  met   x random", flush=True)
    for row in rows:
        print(f"{row['strategy']:<32} {row['seconds']:>7.3f}  {row['target_seconds']:>6.0f}  "
              f"{'yes' if row['met'] else 'NO':<5} {row['x_random']}", flush=True)

    document = {
        "rows": rows,
        "baselines": baselines,
        "platform": {
            "machine": platform.machine(),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "thread_pools": threads,
            "threads_cap": args.threads,
            "domain_classifier_threads": DomainClassifierTest().n_threads,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "data": {
            "features": FEATURES,
            "classes": CLASSES,
            "reference_rows": args.reference_rows,
            "shifted_share": SHIFTED_SHARE,
            "shifted_features": len(SHIFTED),
            "shift_sigma": SHIFT,
            "seed": args.seed,
        },
        "repeats": args.repeats,
        "timing": "median of repeats, time.perf_counter around select(pool, budget), fresh strategy (seed 0) per run",
        "pool_rss_mb": pool_rss,
        "peak_rss_mb": max([*PEAKS, getrusage_peak_mb()]),
        "total_seconds": round(time.perf_counter() - began, 1),
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps({k: v for k, v in document.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
