"""Sequential detectors: driftloop's against River's on the same stream, time per stream and alarms.

The reason this benchmark exists: driftloop keeps its own implementation of a
detector River also has only where its own is faster and raises the same
alarms. ADWIN wraps River's (Rust) since a first run of this benchmark found
River's 5-20 times faster than driftloop's pure-Python ADWIN; PageHinkley is
driftloop's own, the faster of the two. Baseline: River 0.26.1's ADWIN and
PageHinkley, same parameters, same streams, same run, alternating runs so that
both see the same load.

Streams: 100,000 error bits (rate 0.1, then 0.3 from 50,000) for ADWIN;
100,000 N(0, 1) scores (N(1, 1) from 50,000) for Page-Hinkley (delta 0.5,
threshold 50, the unit-variance setting). Figure: the median of 5 runs, each
a fresh detector fed one value at a time with ``update``.

    ~/.cache/driftloop/venv/bin/python benchmarks/detector_speed.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import river
from river import drift as river_drift

from driftloop.drift.sequential import ADWIN, PageHinkley

OUT = Path(__file__).parent / "results" / "detector_speed.json"
N, CHANGE, RUNS = 100_000, 50_000, 5


def feed(detector, stream: list) -> tuple[float, list[int]]:
    """Seconds to feed `stream` one value at a time (River's loop: update, then read the flag), and the alarms."""
    alarms = []
    start = time.perf_counter()
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            alarms.append(i)
    return time.perf_counter() - start, alarms


def compare(name: str, ours, theirs, stream: list) -> dict:
    times: dict[str, list[float]] = {"driftloop": [], "river": []}
    alarms = {}
    for _ in range(RUNS):
        for side, make in (("driftloop", ours), ("river", theirs)):
            seconds, alarms[side] = feed(make(), stream)
            times[side].append(seconds)
    ours_s, river_s = statistics.median(times["driftloop"]), statistics.median(times["river"])
    result = {
        "driftloop_s": round(ours_s, 4), "river_s": round(river_s, 4), "river_over_driftloop": round(river_s / ours_s, 2),
        "same_alarms": alarms["driftloop"] == alarms["river"], "alarms": alarms["driftloop"][:10],
        "runs": {side: [round(t, 4) for t in ts] for side, ts in times.items()},
    }
    print(f"{name}: driftloop {ours_s:.3f} s, River {river_s:.3f} s (River / driftloop {river_s / ours_s:.2f}); "
          f"same alarms: {result['same_alarms']}", flush=True)
    return result


def main() -> None:
    rng = np.random.default_rng(0)
    bits = np.r_[rng.random(CHANGE) < 0.1, rng.random(N - CHANGE) < 0.3].astype(int).tolist()
    scores = np.r_[rng.normal(0, 1, CHANGE), rng.normal(1, 1, N - CHANGE)].tolist()
    document = {
        "baseline": f"river {river.__version__} ADWIN and PageHinkley, same parameters and streams",
        "stream_length": N,
        "adwin": compare("adwin", ADWIN, river_drift.ADWIN, bits),
        "page_hinkley": compare("page_hinkley", lambda: PageHinkley(delta=0.5, threshold=50.0),
                                lambda: river_drift.PageHinkley(delta=0.5, threshold=50.0), scores),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
