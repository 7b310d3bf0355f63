"""Shadow scorer throughput on the MLP: events scored per second from a backlog, against the collector on the same topic.

A backlog of `--events` prediction events (20 numeric features, the collector benchmark's
events) waits on a 4-partition `predictions` topic. Each side reads all of it from the earliest
offset with its own consumer group, in its own process, in the same run:
- **shadow**: the real `ShadowScorer` (`--processes` of them in one consumer group) with a challenger of the built-in `mlp` spec (20 inputs, two
  hidden layers of 64): parse, score, write every answer to `shadow` (acks=all), commit;
- **collector** (the baseline): the real `StoreWriter`: validate, write zstd Parquet, fsync, commit.

    .venv/bin/python benchmarks/shadow_throughput.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector_throughput import collector, in_child, peak_rss_mb, produce  # noqa: E402  same events, same baseline

from driftloop.settings import load_settings  # noqa: E402
from driftloop.stack import LocalStack, create_topics, free_port  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "shadow_throughput.json"
FEATURES = [f"f{j:02d}" for j in range(20)]


def register_models(registry_dir: Path, workdir: Path) -> None:
    """A champion and a challenger of the built-in MLP on the events' 20 features (briefly trained)."""
    import torch

    from driftloop.retrain import ModelRegistry, Preprocessor, TrainingRecord, get_spec, save_model_files

    registry = ModelRegistry.open(registry_dir)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 20))
    data = {name: x[:, j] for j, name in enumerate(FEATURES)}
    spec = get_spec("mlp")
    for alias, concept in (("champion", 0), ("challenger", 1)):
        torch.manual_seed(concept)
        preprocessor = Preprocessor.fit(data)
        module = spec.build_module(preprocessor.width, 2)
        inputs = torch.as_tensor(preprocessor.transform(data))
        target = torch.as_tensor((x[:, concept] > 0).astype(int))
        optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
        for _ in range(50):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(module(inputs), target).backward()
            optimiser.step()
        folder = save_model_files(workdir / alias, module.state_dict(), spec.name, spec.module_params,
                                  preprocessor.width, ["0", "1"], preprocessor)
        registry.register("churn", folder, spec=spec.to_dict(), features=FEATURES, classes=["0", "1"],
                          training=TrainingRecord(str(folder), 1, False, 0.0), metrics={}, alias=alias,
                          reason=f"benchmark {alias}")


def shadow(bootstrap: str, prefix: str, registry_dir: str, count: int, scored, results) -> None:
    """One scorer process of the group; `scored` is the count shared by all of them."""
    import torch
    from prometheus_client import CollectorRegistry

    from driftloop.collector.topics import Topics
    from driftloop.retrain import ModelRegistry
    from driftloop.retrain.decisions import GateLedger
    from driftloop.retrain.shadow import ShadowConfig, ShadowScorer

    torch.set_num_threads(1)
    registry = ModelRegistry.open(Path(registry_dir))
    config = ShadowConfig(bootstrap, Topics(prefix), "churn", group_id="bench-shadow", start_from="earliest")
    scorer = ShadowScorer(config, registry, GateLedger(registry.database), CollectorRegistry())
    began = None
    while scored.value < count:
        done = scorer.step()
        if done:
            began = began or time.perf_counter()
            with scored.get_lock():
                scored.value += done
    ended = time.perf_counter()
    scorer.close()
    results.put({"began": began, "ended": ended, "peak_rss_mb": peak_rss_mb()})


def scorers(processes: int, bootstrap: str, prefix: str, registry_dir: str, count: int) -> dict:
    """`processes` scorers in one consumer group (the partitions split between them), until `count` are scored."""
    scored, results = multiprocessing.Value("q", 0), multiprocessing.Queue()
    children = [multiprocessing.Process(target=shadow, args=(bootstrap, prefix, registry_dir, count, scored, results))
                for _ in range(processes)]
    for child in children:
        child.start()
    done = [results.get() for _ in children]
    for child in children:
        child.join()
    began = min(d["began"] for d in done if d["began"] is not None)
    return {"events_per_s": count / (max(d["ended"] for d in done) - began),
            "peak_rss_mb": max(d["peak_rss_mb"] for d in done)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=1, help="scorer processes in the one consumer group")
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state:
        state = Path(state)
        settings = load_settings(
            data_dir=state / "data",
            stack={"state_dir": state / "stack", "start_prometheus": False, "start_alertmanager": False,
                   "kafka_port": free_port(), "kafka_controller_port": free_port()},
            kafka={"topic_prefix": "bench."},
        )
        stack = LocalStack(settings)
        stack.up()
        try:
            bootstrap = settings.kafka_bootstrap()
            create_topics(bootstrap, settings.kafka)
            registry_dir = state / "registry"
            register_models(registry_dir, state)
            topic = settings.kafka.topic("predictions")
            print(f"producing a backlog of {args.events:,} events of 20 features to {topic} ...", flush=True)
            produce(bootstrap, topic, args.events)
            print("shadow scorer (parse, score with the MLP challenger, write to shadow with acks=all, commit) ...",
                  flush=True)
            ours = scorers(args.processes, bootstrap, "bench.", str(registry_dir), args.events)
            print(f"  {ours['events_per_s']:,.0f} events/s", flush=True)
            print("collector on the same topic (validate, Parquet, fsync, commit) ...", flush=True)
            baseline = in_child(collector, bootstrap, "bench.", str(settings.store_dir), args.events)
            print(f"  {baseline['events_per_s']:,.0f} events/s", flush=True)
        finally:
            stack.down()

    figures = {
        "shadow_events_per_s": round(ours["events_per_s"]),
        "collector_events_per_s": round(baseline["events_per_s"]),
        "ratio_vs_collector": round(ours["events_per_s"] / baseline["events_per_s"], 3),
        "shadow_peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "events": args.events,
        "scorer_processes": args.processes,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    main()
