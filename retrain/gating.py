"""The retrain episode's last steps: the promotion gate's trial of its challenger, then the watch.

`GateSteps` extends `EpisodeRunner` (its `more_steps`) with the steps after `registering`:

- `shadowing`: the challenger answers the champion's traffic in shadow (the shadow scorer) while
  the promotion gate decides on the labelled pairs. Each round runs one `PromotionGate.step()`
  (under the gate's own lease, so a `driftloop gate run` beside it does no harm) and reads the
  episode's trial: promoted -> `watching`, rejected -> `rejected`, aliases moved by hand ->
  `superseded`. While undecided it records the pairs so far in the episode's state.
- `watching`: the watch trial compares the new champion with the previous one; kept -> `kept`,
  rolled back -> `rolled_back`.

Both steps only wait and read; a restarted service resumes them where they were.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from driftloop.retrain.decisions import GateLedger, Trial
from driftloop.retrain.episodes import Episode, EpisodeStore, Step
from driftloop.retrain.registry import ModelRegistry

log = logging.getLogger(__name__)

__all__ = ["GateSteps"]

_PROMOTION_ENDS = {"promoted": Step.WATCHING, "rejected": Step.REJECTED, "superseded": Step.SUPERSEDED}
_WATCH_ENDS = {"kept": Step.KEPT, "rolled_back": Step.ROLLED_BACK, "superseded": Step.SUPERSEDED}


class GateSteps:
    """`shadowing` and `watching`, driven by the promotion gate of each episode's model."""

    def __init__(self, episodes: EpisodeStore, registry: ModelRegistry, ledger: GateLedger,
                 gate_for: Callable[[str], object], poll_s: float = 30.0, hand_over: bool = False) -> None:
        """`gate_for(model)` gives that model's PromotionGate. With `hand_over`, an episode reaching a gate
        step is left there after one round (a foreground `retrain run`: the service carries it on)."""
        if poll_s <= 0:
            raise ValueError(f"'poll_s' must be positive, got {poll_s}")
        self.episodes = episodes
        self.registry = registry
        self.ledger = ledger
        self.gate_for = gate_for
        self.poll_s = poll_s
        self.hand_over = hand_over

    def steps(self) -> dict[Step, Callable[[Episode, threading.Event], Episode]]:
        return {Step.SHADOWING: self.shadowing, Step.WATCHING: self.watching}

    def shadowing(self, episode: Episode, stop: threading.Event) -> Episode:
        return self._wait(episode, stop, Step.SHADOWING, "promotion", _PROMOTION_ENDS)

    def watching(self, episode: Episode, stop: threading.Event) -> Episode:
        return self._wait(episode, stop, Step.WATCHING, "watch", _WATCH_ENDS)

    def _wait(self, episode: Episode, stop: threading.Event, step: Step, kind: str, ends: dict) -> Episode:
        gate = self.gate_for(episode.model)
        seen = None
        while True:
            gate.step()
            trial = self.ledger.episode_trial(episode.id, kind)
            if trial is None and kind == "watch" and self._promoted_without_watch(episode):
                return self.episodes.advance(episode.id, step, Step.KEPT, reason="promoted; no previous champion "
                                                                                "to watch it against")
            if trial is None and kind == "promotion" and self._challenger_gone(episode):
                return self.episodes.advance(episode.id, step, Step.SUPERSEDED,
                                             reason=f"version {episode.state.get('version')} stopped being the "
                                                    "challenger before the gate opened its trial")
            if trial is not None and trial.status in ends:
                return self.episodes.advance(episode.id, step, ends[trial.status], self._summary(trial),
                                             reason=f"{trial.status}: {trial.reason}")
            progress = self._progress(trial)
            if progress != seen:
                episode, seen = self.episodes.update_state(episode.id, step, progress), progress
            if self.hand_over:
                stop.set()  # the caller returns; the episode stays here for the service to resume
                return episode
            if stop.wait(self.poll_s):
                return episode

    def _progress(self, trial: Trial | None) -> dict:
        if trial is None:
            return {}
        last = self.ledger.last_decision(trial.id)
        return {f"{trial.kind}_trial": trial.id,
                f"{trial.kind}_pairs": 0 if last is None else last.pairs,
                f"{trial.kind}_status": last.reason if last is not None else "waiting for labelled pairs"}

    def _summary(self, trial: Trial) -> dict:
        last = self.ledger.last_decision(trial.id)
        summary = {f"{trial.kind}_trial": trial.id, f"{trial.kind}_outcome": trial.status}
        if last is not None:
            summary[f"{trial.kind}_decision"] = last.id
            summary[f"{trial.kind}_pairs"] = last.pairs
        return summary

    def _challenger_gone(self, episode: Episode) -> bool:
        return self.registry.alias(episode.model, "challenger") != episode.state.get("version")

    def _promoted_without_watch(self, episode: Episode) -> bool:
        promotion = self.ledger.episode_trial(episode.id, "promotion")
        return promotion is not None and promotion.status == "promoted" and promotion.baseline_version is None
