"""A drift monitor run costs its window, not the store's history: 1 day against 30 days of history.

A store is built as the store writer lays it out (one zstd Parquet file per partition and hour
folder, named by topic, partition and offsets): ``--per-day`` predictions a day of a model with 20
numeric features, 60% of them labelled, 95% of the labels within minutes (exponential, mean 10
minutes) and 5% one to six days later. Then a monitor with the defaults of ``driftloop drift
run`` (a one-hour window, every column scored with the automatic choice of statistic, the
domain-classifier test against a 10,000-row reference sample, ADWIN and DDM on the labels, a
7-day label horizon, state saved after every run) runs as it does every minute: a minute of new
predictions and labels is written, then one run. The figure is the median of ``--runs`` such
runs; the baseline is the same monitor on the same kind of store with one day of history, in the
same process; the two monitors take turns, run for run, so that a busy machine slows both alike.

Also printed (not in the JSON): the same runs without the domain-classifier test (about two
seconds of every default run, the same whatever the history), the first start, which reads the
labels of the last horizon once, and a restart from the saved state, which does not.

Run: ``python benchmarks/monitor_history.py`` (about 10 minutes on 2 busy cores, 0.7 GB of disk under
the temporary directory); writes ``benchmarks/results/monitor_history.json`` with
``seconds_1d``, ``seconds_30d`` and ``ratio_30d_vs_1d``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.collector.store import Store
from driftloop.drift.monitor import DriftMonitor, MonitorConfig
from driftloop.drift.multivariate import DomainClassifierTest
from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.sequential import make_detector
from driftloop.drift.window import WindowDrift

OUT = Path(__file__).parent / "results" / "monitor_history.json"
END = datetime(2026, 12, 1, tzinfo=UTC)
MODEL, FEATURES, PARTITIONS = "churn", 20, 4
TS = pa.timestamp("us", tz="UTC")
US = 1_000_000


class SyntheticStore:
    """Predictions and their feedback, appended to a store folder interval by interval, with Kafka offsets."""

    def __init__(self, root: Path, per_day: int, seed: int = 0) -> None:
        self.root = root
        self.per_day = per_day
        self.rng = np.random.default_rng(seed)
        self.offsets = {"predictions": [0] * PARTITIONS, "feedback": [0] * PARTITIONS}
        self.pending = {"ts": np.zeros(0, np.int64), "request": np.zeros(0, np.int64),
                        "label": np.zeros(0, np.int8), "partition": np.zeros(0, np.int8)}
        self.count = 0

    def append(self, start: datetime, end: datetime) -> None:
        """Predictions with times in [start, end), and every pending label with a time before `end`."""
        rng = self.rng
        n = int(round(self.per_day * (end - start) / timedelta(days=1)))
        ts = np.sort(rng.integers(int(start.timestamp() * US), int(end.timestamp() * US), n))
        requests = np.arange(self.count, self.count + n)
        self.count += n
        partition = rng.integers(0, PARTITIONS, n).astype(np.int8)
        x = rng.normal(size=(n, FEATURES))
        p_one = 1 / (1 + np.exp(-x[:, 0]))
        predicted = (p_one > 0.5).astype(np.int8)
        self._write("predictions", ts, partition, lambda rows: {
            "event_id": pa.array([f"p{r}" for r in requests[rows]]),
            "request_id": pa.array([f"r{r}" for r in requests[rows]]),
            "timestamp": pa.array(ts[rows], TS),
            "model_name": pa.array([MODEL] * len(rows)), "model_version": pa.array(["1"] * len(rows)),
            "latency_ms": pa.array(np.full(len(rows), 3.0)),
            "label": pa.array(predicted[rows].astype(str)), "score": pa.nulls(len(rows), pa.float64()),
            "proba.0": pa.array(1 - p_one[rows]), "proba.1": pa.array(p_one[rows]),
            **{f"feature.f{j:02d}": pa.array(x[rows, j]) for j in range(FEATURES)},
        })
        labelled = rng.random(n) < 0.6
        delay = np.where(rng.random(n) < 0.95, rng.exponential(600 * US, n), rng.uniform(86_400 * US, 6 * 86_400 * US, n))
        truth = np.where(rng.random(n) < 0.8, predicted, 1 - predicted).astype(np.int8)
        pending = self.pending
        for key, values in (("ts", ts + delay.astype(np.int64)), ("request", requests), ("label", truth), ("partition", partition)):
            pending[key] = np.concatenate([pending[key], values[labelled]])
        due = pending["ts"] < int(end.timestamp() * US)
        now = {key: values[due] for key, values in pending.items()}
        self.pending = {key: values[~due] for key, values in pending.items()}
        order = np.argsort(now["ts"], kind="stable")
        now = {key: values[order] for key, values in now.items()}
        self._write("feedback", now["ts"], now["partition"], lambda rows: {
            "event_id": pa.array([f"f{r}" for r in now["request"][rows]]),
            "request_id": pa.array([f"r{r}" for r in now["request"][rows]]),
            "timestamp": pa.array(now["ts"][rows], TS), "label": pa.array(now["label"][rows].astype(str)),
            "rating": pa.nulls(len(rows), pa.float64()), "source": pa.array(["user"] * len(rows)),
        })

    def _write(self, kind: str, ts: np.ndarray, partition: np.ndarray, columns) -> None:
        """One file per partition and hour folder of `ts`, offsets continuing each partition's."""
        hours = ts // (3600 * US)
        for p in range(PARTITIONS):
            mine = np.flatnonzero(partition == p)
            first = self.offsets[kind][p]
            offsets = np.arange(first, first + len(mine))
            self.offsets[kind][p] += len(mine)
            for hour in np.unique(hours[mine]):
                in_hour = hours[mine] == hour
                rows = mine[in_hour]
                table = pa.table({**columns(rows), "kafka_partition": pa.array(np.full(len(rows), p, np.int32)),
                                  "kafka_offset": pa.array(offsets[in_hour])})
                folder = self.root / kind
                if kind == "predictions":
                    folder = folder / f"model={MODEL}"
                moment = datetime.fromtimestamp(int(hour) * 3600, UTC)
                path = folder / moment.strftime("date=%Y-%m-%d/hour=%H") / (
                    f"bench.{kind}+{p}+{offsets[in_hour][0]:020d}+{offsets[in_hour][-1]:020d}.parquet")
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, path, compression="zstd")


def reference(rows: int = 10_000, seed: int = 99) -> pa.Table:
    """Reference rows shaped like the store's (the same distribution as the traffic)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES))
    p_one = 1 / (1 + np.exp(-x[:, 0]))
    return pa.table({"label": pa.array((p_one > 0.5).astype(int).astype(str)), "proba.0": 1 - p_one, "proba.1": p_one,
                     **{f"feature.f{j:02d}": x[:, j] for j in range(FEATURES)}})


def monitor(store_dir: Path, state_dir: Path, sample: pa.Table, profile: ReferenceProfile) -> DriftMonitor:
    return DriftMonitor(
        MonitorConfig(MODEL), Store(store_dir), profile, WindowDrift(),
        multivariate=DomainClassifierTest(seed=0), reference_sample=sample,
        detectors={"adwin": lambda: make_detector("adwin"), "ddm": lambda: make_detector("ddm")},
        state_dir=state_dir,
    )


class History:
    """One store of `days` of history and its monitor, run minute after minute."""

    def __init__(self, days: int, per_day: int, work: Path, sample: pa.Table, profile: ReferenceProfile) -> None:
        self.days, self.root, self.sample, self.profile = days, work / f"history-{days}d", sample, profile
        self.synthetic = SyntheticStore(self.root / "store", per_day, seed=days)
        began = time.perf_counter()
        for day in range(days, 0, -1):
            self.synthetic.append(END - timedelta(days=day), END - timedelta(days=day - 1))
        self.built = time.perf_counter() - began
        self.files = sum(1 for _ in (self.root / "store").rglob("*.parquet"))
        began = time.perf_counter()
        self.monitor = monitor(self.root / "store", self.root / "state", sample, profile)
        self.labels_at_start = self.monitor.run_once(END).labels
        self.first_start = time.perf_counter() - began
        self.now = END
        self.seconds = {"default": [], "bare": []}

    def step(self, kind: str) -> None:
        """A minute of new traffic, then one timed run (`bare`: without the domain-classifier test)."""
        self.synthetic.append(self.now, self.now + timedelta(minutes=1))
        self.now += timedelta(minutes=1)
        multivariate = self.monitor.multivariate
        if kind == "bare":
            self.monitor.multivariate = None
        began = time.perf_counter()
        run = self.monitor.run_once(self.now)
        self.seconds[kind].append(time.perf_counter() - began)
        self.monitor.multivariate = multivariate
        assert not run.failed, run.note
        self.last = run

    def restart(self) -> float:
        """Seconds from a new monitor on the saved state to the end of its first run."""
        began = time.perf_counter()
        restarted = monitor(self.root / "store", self.root / "state", self.sample, self.profile)
        self.synthetic.append(self.now, self.now + timedelta(minutes=1))
        self.now += timedelta(minutes=1)
        restarted.run_once(self.now)
        return time.perf_counter() - began

    def report(self, restart: float) -> str:
        return (f"{self.days:>2} days: {self.files} files ({self.built:.0f} s to build); first start "
                f"{self.first_start:.2f} s ({self.labels_at_start} labels of the horizon read once); "
                f"runs {', '.join(f'{s:.3f}' for s in self.seconds['default'])} s ({self.last.rows} rows in the "
                f"window, {self.last.labels} new labels); without the multivariate test "
                f"{', '.join(f'{s:.3f}' for s in self.seconds['bare'])} s; restart from the saved state {restart:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-day", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--long", type=int, default=30, help="days of history of the long store")
    args = parser.parse_args()
    sample = reference()
    profile = ReferenceProfile.build(sample)
    with tempfile.TemporaryDirectory() as folder:
        short = History(1, args.per_day, Path(folder), sample, profile)
        long = History(args.long, args.per_day, Path(folder), sample, profile)
        for kind in ("default", "bare"):  # the two monitors take turns, so a busy machine slows both alike
            for _ in range(args.runs):
                short.step(kind)
                long.step(kind)
        for history in (short, long):
            print(history.report(history.restart()), flush=True)
        shutil.rmtree(Path(folder) / "history-1d", ignore_errors=True)
    median = {(h.days, kind): statistics.median(h.seconds[kind]) for h in (short, long) for kind in ("default", "bare")}
    ratio = median[(args.long, "default")] / median[(1, "default")]
    print(f"monitor run: {median[(1, 'default')]:.3f} s with 1 day of history, {median[(args.long, 'default')]:.3f} s "
          f"with {args.long}: ratio {ratio:.2f} (target <= 2)")
    print(f"without the multivariate test: {median[(1, 'bare')]:.3f} s and {median[(args.long, 'bare')]:.3f} s: "
          f"ratio {median[(args.long, 'bare')] / median[(1, 'bare')]:.2f}")
    result = {"seconds_1d": round(median[(1, "default")], 4), "seconds_30d": round(median[(args.long, "default")], 4),
              "ratio_30d_vs_1d": round(ratio, 3)}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
