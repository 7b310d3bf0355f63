"""The demo's figures: `driftloop demo --fast` with the configured strategy, then with random selection.

Both runs use the same seed (the same world, traffic and drift) and the same label budget; the only
difference is how the retrain service's episode picks the inputs it sends for labelling. Each run
is the real thing: its own stack, every service its own process, the alert through Prometheus and
Alertmanager, Ray training, the shadow scorer and the gate (see driftloop/demo/loop.py).

Figures (benchmarks/results/demo.json), read by each run from the store, the registry, the episode
table and Prometheus (its summary.json):
- accuracy_before_drift, accuracy_during_drift, accuracy_after_promotion: accuracy on the users'
  labels (a random share of the traffic) before the onset; between the onset and the promotion,
  served by the first champion; after the promotion, served by the promoted version.
- seconds_onset_to_alert: to the first retrain alert firing in Prometheus (ALERTS);
  seconds_onset_to_trigger: to the retrain service's trigger that started the episode;
  seconds_onset_to_promotion: to the gate's move of the champion alias.
- seconds_command (and _random): the whole `driftloop demo --fast` command, from its start (the
  stack coming up) to its exit (every process stopped).
- labels_used: labels of post-drift traffic that arrived before the retrain's snapshot (the
  annotator's batch and the users' labels); labels_used_random and accuracy_after_promotion_random:
  the same from the run with random selection.

Targets: accuracy after promotion within 5 points of before the drift; onset to promotion under
5 minutes; labels used at most half of random's for the same recovered accuracy.

    .venv/bin/python benchmarks/demo.py [--seed 0] [--strategy drift_targeted]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("accuracy_before_drift", "accuracy_during_drift", "accuracy_after_promotion", "seconds_onset_to_alert",
        "seconds_onset_to_trigger", "seconds_onset_to_promotion", "labels_used")


def run(demo_dir: Path, seed: int, strategy: str) -> dict:
    env = {**os.environ, "DRIFTLOOP_DEMO__DIR": str(demo_dir)}
    command = [sys.executable, "-m", "driftloop.cli", "demo", "--fast", "--seed", str(seed), "--strategy", strategy]
    print(f"$ {' '.join(command[2:])}", flush=True)
    began = time.monotonic()
    subprocess.run(command, env=env, check=True, timeout=1200)
    wall_s = round(time.monotonic() - began, 1)
    run_dir = (demo_dir / "latest").resolve()
    return {**json.loads((run_dir / "summary.json").read_text()), "plot": str(run_dir / "demo.png"),
            "seconds_command": wall_s}


def redraw(run_dir: Path, out: Path) -> None:
    """Draw a kept run's plot again: its Prometheus is started on its data for the time it takes."""
    from datetime import datetime

    from driftloop.demo.report import draw, read_outcome
    from driftloop.settings import load_settings
    from driftloop.stack import LocalStack

    settings = load_settings(run_dir / "driftloop.toml")
    only = settings.stack.model_copy(update={"start_kafka": False, "start_alertmanager": False})
    stack = LocalStack(settings.model_copy(update={"stack": only}))
    summary = json.loads((run_dir / "summary.json").read_text())
    told = [(datetime.fromisoformat(e["at"]), e["event"]) for e in summary["timeline"]
            if e["event"].startswith(("traffic", "annotator"))]
    stack.up()
    try:
        outcome = read_outcome(settings, settings.demo.model, datetime.fromisoformat(summary["started_at"]),
                               datetime.fromisoformat(summary["onset_at"]), datetime.fromisoformat(summary["ended_at"]),
                               told)
        draw(settings, outcome, out)
    finally:
        stack.down()
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="drift_targeted")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "demo.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "images" / "demo.png")
    parser.add_argument("--redraw", type=Path, help="only draw this kept run's plot again (into --plot)")
    args = parser.parse_args()
    if args.redraw:
        redraw(args.redraw, args.plot)
        return
    with tempfile.TemporaryDirectory(prefix="driftloop-demo-bench-") as folder:
        configured = run(Path(folder) / "configured", args.seed, args.strategy)
        shutil.copyfile(configured["plot"], args.plot)
        random = run(Path(folder) / "random", args.seed, "random")
    result = {key: configured.get(key) for key in KEYS}
    result["labels_used_random"] = random.get("labels_used")
    result["accuracy_after_promotion_random"] = random.get("accuracy_after_promotion")
    result["seconds_command"] = configured["seconds_command"]  # the whole `driftloop demo --fast`, stack up to down
    result["seconds_command_random"] = random["seconds_command"]
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    before, after = result["accuracy_before_drift"], result["accuracy_after_promotion"]
    if before is not None and after is not None:
        print(f"after promotion {after:.3f} vs before {before:.3f}: {'within' if before - after <= 0.05 else 'NOT within'}"
              " 5 points")
    if result["labels_used"] and result["labels_used_random"]:
        print(f"labels used: {args.strategy} {result['labels_used']}, random {result['labels_used_random']} "
              f"(ratio {result['labels_used'] / result['labels_used_random']:.2f}); accuracy after promotion "
              f"{args.strategy} {after}, random {result['accuracy_after_promotion_random']}")
    for name, summary in (("configured", configured), ("random", random)):
        print(f"{name}: end {summary.get('end')}, {summary.get('seconds_total')} s, "
              f"labels by source {summary.get('labels_used_by_source')}")


if __name__ == "__main__":
    main()
