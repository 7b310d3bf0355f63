"""`driftloop demo`: the whole loop, live, each service its own process, untouched once the traffic starts.

1. the run's own stack (Kafka, Prometheus with the shipped alert rules, Alertmanager) on free ports;
2. the first champion trained on the reference digits and registered (with its reference profile);
3. the services, each a real `driftloop` command in its own process, pid recorded: the ingestion API,
   the collector, the drift monitor, the retrain service (Alertmanager's webhook), the model server,
   the shadow scorer and the gate;
4. users send requests at a steady rate to the model server and label a share of the answers;
   part way, the world drifts; an annotator answers the labelling batches the retrain service asks for;
5. from there nothing is done by hand: the drift monitor sees the drift, Prometheus fires the alert,
   Alertmanager calls the retrain service, whose episode selects a batch, waits for its labels,
   snapshots, trains on Ray, registers a challenger; the shadow scorer scores it, the gate decides,
   and the model server swaps to a promoted model without a failed request;
6. the end: every process stopped by its pid, the data left in the run's folder, a summary, a JSON
   file of the figures and a PNG of accuracy and drift over time.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow.parquet as pq
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from driftloop.demo.actors import Annotator, Users
from driftloop.demo.champion import train_first_champion
from driftloop.demo.report import draw, prometheus_value, read_outcome
from driftloop.demo.runs import CONFIG_FILE, PROFILES, RunLock, Services, new_run_dir, run_settings, write_config
from driftloop.demo.world import DigitsWorld
from driftloop.settings import Settings
from driftloop.stack import LocalStack

SUMMARY_FILE = "summary.json"
PLOT_FILE = "demo.png"


def run_demo(settings: Settings, fast: bool, console: Console, keep_stack: bool = False) -> Path:
    """Run the demo once; the run's folder (kept). A run while another holds the lock raises DemoRunning."""
    profile = PROFILES["fast" if fast else "default"]
    for noisy in ("httpx", "httpcore", "kafka"):  # one line per request would bury the live view
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with RunLock(settings.demo.dir) as lock:
        run_dir = new_run_dir(settings.demo.dir)
        values = run_settings(settings, run_dir, profile)
        config = write_config(values, run_dir / CONFIG_FILE)
        run = Settings(**values)  # the run's file, validated; as strong as the children read it
        lock.write(f"pid {os.getpid()}, run {run_dir}")
        Demo(run, profile.name, run_dir, config, console).go(keep_stack)
        return run_dir


class _Stopped(Exception):
    pass


def _sigterm(*_) -> None:
    raise KeyboardInterrupt


class Demo:
    def __init__(self, settings: Settings, profile: str, run_dir: Path, config: Path, console: Console) -> None:
        self.settings, self.profile, self.run_dir, self.config, self.console = settings, profile, run_dir, config, console
        self.model = settings.demo.model
        self.stack = LocalStack(settings)
        self.services = Services(settings.stack.state_dir, config)
        self.events: list[tuple[datetime, str]] = []
        self.users: Users | None = None
        self.annotator: Annotator | None = None

    def say(self, text: str) -> None:
        self.events.append((datetime.now(UTC), text))

    def go(self, keep_stack: bool) -> None:
        previous = signal.signal(signal.SIGTERM, _sigterm)
        demo, console = self.settings.demo, self.console
        console.rule(f"driftloop demo ({self.profile} profile): {self.run_dir}")
        try:
            with console.status("starting the local stack: Kafka, Prometheus, Alertmanager"):
                self.stack.up()
            console.print(f"stack up: Kafka {self.settings.kafka_bootstrap()}, Prometheus "
                          f"{self.settings.prometheus_url()}, Alertmanager {self.settings.alertmanager_url()}")
            world = DigitsWorld(demo.seed, demo.drift_kind, demo.rotation_degrees, demo.noise)
            reference = world.reference()
            reference_file = self.settings.retrain.reference_files[self.model]
            reference_file.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(reference, reference_file)
            with console.status("training the first champion on the reference digits"):
                champion = train_first_champion(self.settings, self.model, reference,
                                                self.run_dir / "data" / "first-champion", seed=demo.seed)
            console.print(f"champion: {self.model} version {champion.version} "
                          f"(validation accuracy {champion.metrics['val_accuracy']:.3f} on {reference.num_rows} "
                          "reference digits), registered with its reference profile")
            self.start_services()
            self.loop(world)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping every process this run started[/yellow]")
            raise
        finally:
            # The clean-up runs whole: a second Ctrl-C must not leave services or the stack behind.
            interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if self.users is not None:
                self.users.stop(drain_s=0)
            if self.annotator is not None:
                self.annotator.stop()
            stopped = self.services.stop()
            console.print(f"stopped: {', '.join(stopped) or 'no service'}")
            if not keep_stack:
                console.print(f"stack stopped: {', '.join(self.stack.down()) or 'nothing'}")
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, interrupt)
            self.tell_where()

    def start_services(self) -> None:
        model, settings = self.model, self.settings
        commands = [("collector", "collector", "run"), ("api", "api", "run"),
                    ("drift", "drift", "run", "--model", model), ("retrain", "retrain", "serve"),
                    ("serve", "serve", "--model", model), ("shadow", "shadow", "run", "--model", model),
                    ("gate", "gate", "run", "--model", model)]
        for name, *args in commands:
            pid = self.services.start(name, *args)
            self.console.print(f"started {name:9} pid {pid:>7}  driftloop {' '.join(args)}")
        serve = f"http://{settings.serve.host}:{settings.serve.port}"
        api = f"http://{settings.api.host}:{settings.api.port}"
        retrain = settings.alertmanager.webhook_url.rsplit("/", 2)[0]
        with self.console.status("waiting for the services to answer"):
            deadline = time.monotonic() + 240
            while not all(_healthy(url) for url in (serve, api, retrain)):
                if failed := self.services.failed():
                    raise RuntimeError(f"{', '.join(failed)} stopped during start; see "
                                       f"{self.settings.stack.state_dir / 'logs'}: {self._log_tail(failed[0])}")
                if time.monotonic() > deadline:
                    raise TimeoutError("the services did not answer within 240 s")
                time.sleep(0.5)
        self.console.print(f"model server {serve}, ingestion API {api}, retrain webhook "
                           f"{settings.alertmanager.webhook_url}")

    def _log_tail(self, name: str) -> str:
        path = self.settings.stack.state_dir / "logs" / f"{name}.log"
        try:
            return " | ".join(path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return ""

    def loop(self, world: DigitsWorld) -> None:
        from driftloop.retrain.episodes import EpisodeStore
        from driftloop.retrain_service import open_registry

        settings, demo = self.settings, self.settings.demo
        started = datetime.now(UTC)
        onset = started.timestamp() + demo.drift_onset_s
        serve = f"http://{settings.serve.host}:{settings.serve.port}"
        api = f"http://{settings.api.host}:{settings.api.port}"
        self.users = Users(world, serve, api, rate=demo.rate, label_share=demo.label_share,
                           label_delay_s=demo.label_delay_s, onset_at=onset, withhold_after_onset=demo.withhold_labels,
                           seed=demo.seed).start()
        labelling = self.run_dir / "data" / "labelling"
        labelling.mkdir(parents=True, exist_ok=True)
        self.annotator = Annotator(settings, self.users.truth, labelling, delay_s=demo.annotator_delay_s,
                                   since=started, withhold=demo.withhold_labels).start()
        self.say(f"traffic: {demo.rate:g} requests/s; users label {demo.label_share:.0%} after {demo.label_delay_s:g} s")
        registry = open_registry(settings)
        episodes = EpisodeStore(registry.database)
        view = View(self, started, onset)
        end_reason = "duration"
        with Live(view.render(), console=self.console, refresh_per_second=2, transient=False) as live:
            while True:
                now = time.time()
                if now >= onset and not view.onset_said:
                    view.onset_said = True
                    self.say(f"the world drifts: {demo.drift_kind}"
                             + (f" {demo.rotation_degrees:g}°" if demo.drift_kind == "rotate" else "")
                             + (" (labels withheld from now on)" if demo.withhold_labels else ""))
                view.poll(registry, episodes)
                live.update(view.render())
                if failed := self.services.failed():
                    raise RuntimeError(f"{', '.join(failed)} stopped unexpectedly: {self._log_tail(failed[0])}")
                watched = view.promoted_at is not None and now - view.promoted_at >= demo.after_promotion_s
                ended = view.finished_episode
                # a kept model goes on serving for `after_promotion_s`: its accuracy needs the labels of that time
                if ended is not None and (ended.outcome != "kept" or view.promoted_at is None or watched):
                    end_reason = f"episode {ended.outcome}"
                    break
                if watched:
                    end_reason = "promoted"
                    break
                if now - started.timestamp() >= demo.duration_s:
                    break
                time.sleep(1.0)
        self.console.print(f"run ends: {end_reason}")
        self.finish(started, datetime.fromtimestamp(onset, UTC), end_reason)

    def finish(self, started: datetime, onset: datetime, end_reason: str) -> None:
        from driftloop.demo.checks import stored_exactly_once, wait_stored

        self.users.stop()
        self.annotator.stop()
        ended = datetime.now(UTC)
        with self.console.status("waiting for the collector to store the last events"):
            wait_stored(self.settings, timeout_s=120)
        told = [(at, text) for at, text in self.events if text.startswith("traffic")]
        told += [(datetime.fromtimestamp(a.at, UTC), f"annotator: {a.labels_sent} labels of batch {a.batch_id} imported"
                  if not a.withheld else f"annotator: batch {a.batch_id} left unlabelled (labels withheld)")
                 for a in self.annotator.answered]
        outcome = read_outcome(self.settings, self.model, started, onset, ended, told)
        figures = dict(outcome.figures)
        answers = self.users.snapshot()
        figures.update({
            "started_at": started.isoformat(), "onset_at": onset.isoformat(), "ended_at": ended.isoformat(),
            "profile": self.profile, "end": end_reason, "strategy": self.settings.demo.strategy,
            "seed": self.settings.demo.seed, "drift_kind": self.settings.demo.drift_kind,
            "withhold_labels": self.settings.demo.withhold_labels,
            "requests": len(answers), "failed_requests": sum(1 for a in answers if a.status != 200),
            "user_labels_sent": len(self.users.feedback_accepted), "annotator_labels_sent": self.annotator.labels_sent,
            "label_budget": self.settings.demo.label_budget,
            "seconds_total": round((ended - started).total_seconds(), 1),
        })
        figures.update(stored_exactly_once(self.settings, self.model, answers, self.users.feedback_accepted))
        plot = draw(self.settings, outcome, self.run_dir / PLOT_FILE)
        document = {"run": str(self.run_dir), **figures,
                    "timeline": [{"at": at.isoformat(), "seconds_from_onset": outcome.seconds(at), "event": text}
                                 for at, text in outcome.events]}
        (self.run_dir / SUMMARY_FILE).write_text(json.dumps(document, indent=2, default=str))
        self.print_summary(outcome, figures, plot)

    def print_summary(self, outcome, figures: dict, plot: Path) -> None:
        console = self.console
        console.rule("what happened")
        table = Table(title="timeline", show_lines=False)
        table.add_column("from onset", justify="right")
        table.add_column("event", overflow="fold")
        for at, text in outcome.events:
            table.add_row(f"{outcome.seconds(at):+.0f} s", text)
        console.print(table)

        def pct(value):
            return "-" if value is None else f"{value:.1%}"

        console.print(
            f"accuracy on users' labels: before the drift {pct(figures['accuracy_before_drift'])}, during it "
            f"{pct(figures['accuracy_during_drift'])}, after promotion {pct(figures['accuracy_after_promotion'])}\n"
            f"onset to alert {figures['seconds_onset_to_alert']} s, to trigger {figures['seconds_onset_to_trigger']} s, "
            f"to promotion {figures['seconds_onset_to_promotion']} s\n"
            f"labels of post-drift traffic used by the retrain: {figures['labels_used']} "
            f"{figures['labels_used_by_source']}; {figures['requests']} requests, {figures['failed_requests']} failed; "
            f"stored exactly once: {figures['stored_exactly_once']}")

    def tell_where(self) -> None:
        settings, run = self.settings, self.run_dir
        reports = settings.data_dir / "reports" / self.model
        self.console.print(Panel.fit("\n".join([
            f"run folder (kept): {run}",
            f"summary: {run / SUMMARY_FILE}   plot: {run / PLOT_FILE}",
            f"store: {settings.store_dir}   registry: {settings.data_dir / 'registry'}",
            f"logs of every process: {settings.stack.state_dir / 'logs'}",
            f"Prometheus data: {settings.stack.state_dir / 'prometheus' / 'data'}",
            f"look around with the run's settings: export DRIFTLOOP_CONFIG={self.config}",
            f"  Evidently report: driftloop drift report --model {self.model} --window 10m (writes {reports})",
            f"  driftloop models history --model {self.model};  driftloop retrain episodes;  driftloop store query",
            f"  driftloop gate decisions --model {self.model};  dashboards' JSON: driftloop dashboards --help",
        ]), title="where everything is"))


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class View:
    """The live view: phase, traffic, drift, versions and their accuracy, the episode, events."""

    def __init__(self, demo: Demo, started: datetime, onset: float) -> None:
        self.demo, self.started, self.onset = demo, started, onset
        self.onset_said = False
        self.drift_share = self.dataset_drift = None
        self.aliases: dict = {}
        self.episode = None
        self.finished_episode = None
        self.promoted_at: float | None = None
        self.step_seen: dict[str, str] = {}
        self.alert_said = False
        self.challenger_accuracy: dict[int, tuple[float, int]] = {}
        self.answered_seen = 0
        self._last_slow = 0.0

    def poll(self, registry, episodes) -> None:
        demo, model = self.demo, self.demo.model
        for answer in demo.annotator.answered[self.answered_seen:]:
            demo.say(f"annotator: batch {answer.batch_id} left unlabelled (labels withheld)" if answer.withheld
                     else f"annotator: {answer.labels_sent} labels of batch {answer.batch_id} sent")
        self.answered_seen = len(demo.annotator.answered)
        aliases = registry.aliases(model)
        if aliases.get("challenger") and aliases.get("challenger") != self.aliases.get("challenger"):
            demo.say(f"challenger: version {aliases['challenger']} registered")
        if aliases.get("champion") != self.aliases.get("champion") and self.aliases:
            demo.say(f"champion is now version {aliases.get('champion')}")
            if self.promoted_at is None:
                self.promoted_at = time.time()
        self.aliases = aliases
        found = episodes.episodes(model, limit=1)
        if found:
            episode = found[0]
            if episode.id not in self.step_seen:
                demo.say(f"episode {episode.id} opened by {episode.source}")
            if self.step_seen.get(episode.id) != str(episode.step):
                self.step_seen[episode.id] = str(episode.step)
                demo.say(f"episode {episode.id}: {episode.step}" + (f" ({episode.reason})" if episode.reason else ""))
            self.episode = episode
            if episode.finished and episode.created_at >= self.started:
                self.finished_episode = episode
        if time.time() - self._last_slow >= 3:
            self._last_slow = time.time()
            settings = demo.settings
            try:
                self.drift_share = prometheus_value(settings, f'max(driftloop_drift_share{{model="{model}"}})')
                self.dataset_drift = prometheus_value(settings, f'max(driftloop_drift_dataset_drift{{model="{model}"}})')
                firing = prometheus_value(settings, f'count(ALERTS{{alertstate="firing",model="{model}",action="retrain"}})')
                if firing and not self.alert_said:
                    self.alert_said = True
                    demo.say("Prometheus: a retrain alert is firing")
            except OSError:
                pass
            if aliases.get("challenger"):
                self._challenger(aliases["challenger"])

    def _challenger(self, version: int) -> None:
        from driftloop.collector.store import Store

        try:
            shadow = Store(self.demo.settings.store_dir).shadow(self.demo.model, version=str(version))
        except Exception:  # noqa: BLE001 - the store is being written: the next poll reads it
            return
        if shadow.num_rows == 0:
            return
        labelled = {a.request_id: a.truth for a in self.demo.users.snapshot() if a.labelled}
        pairs = [(label == labelled[r]) for r, label in zip(shadow["request_id"].to_pylist(),
                                                            shadow["label"].cast("string").to_pylist(), strict=True)
                 if r in labelled]
        if pairs:
            self.challenger_accuracy[version] = (sum(pairs) / len(pairs), len(pairs))

    def render(self):
        demo = self.demo
        answers = demo.users.snapshot() if demo.users else []
        now = time.time()
        recent = [a for a in answers if a.at >= now - 30]
        labelled = [a for a in recent if a.labelled and a.label is not None]
        by_version: dict = {}
        for answer in labelled:
            by_version.setdefault(answer.version, []).append(answer.label == answer.truth)
        elapsed = now - self.started.timestamp()
        phase = ("before the drift" if now < self.onset else
                 "promoted: watching" if self.promoted_at else "drifted: the loop at work")
        status = Table.grid(padding=(0, 2))
        status.add_column(style="bold")
        status.add_column()
        status.add_row("phase", f"{phase}  (t = {elapsed:.0f} s, drift at {self.onset - self.started.timestamp():.0f} s)")
        status.add_row("traffic", f"{len(answers)} requests, {len(recent) / 30:.1f}/s over 30 s, "
                                  f"{sum(1 for a in answers if a.status != 200)} failed; "
                                  f"{len(demo.users.feedback_accepted) if demo.users else 0} user labels, "
                                  f"{demo.annotator.labels_sent if demo.annotator else 0} annotator labels")
        share = "-" if self.drift_share is None else f"{self.drift_share:.2f}"
        status.add_row("drift", f"share of drifted features {share}; dataset drift "
                                f"{'-' if self.dataset_drift is None else bool(self.dataset_drift)}")
        status.add_row("versions", ", ".join(f"{k} v{v}" for k, v in sorted(self.aliases.items())) or "-")
        accuracy = "; ".join(f"v{v}: {sum(c) / len(c):.1%} of {len(c)}" for v, c in sorted(by_version.items(),
                                                                                           key=lambda i: i[0] or 0))
        status.add_row("served accuracy", (accuracy or "-") + "  (users' labels, last 30 s)")
        shadow = "; ".join(f"v{v}: {a:.1%} of {n}" for v, (a, n) in sorted(self.challenger_accuracy.items()))
        status.add_row("challenger (shadow)", shadow or "-")
        episode = self.episode
        status.add_row("episode", "-" if episode is None else
                       f"{episode.id} {episode.step}" + (f": {episode.reason}" if episode.reason else ""))
        log = Table.grid()
        for at, text in demo.events[-10:]:
            log.add_row(f"[dim]{(at - self.started).total_seconds():5.0f} s[/dim]  {text}")
        return Group(Panel(status, title="driftloop demo"), Panel(log, title="events"))
