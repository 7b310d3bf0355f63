"""driftloop's Grafana dashboards, one module each, in an explicit registry: name -> builder.

`driftloop dashboards build` renders each to JSON (`driftloop.dashboards.export`); the JSON files
are committed and never edited by hand.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders.dashboard import Dashboard

from driftloop.dashboards.boards import drift, overview, quality, retraining

BOARDS: dict[str, Callable[[], Dashboard]] = {
    "overview": overview.build,
    "drift": drift.build,
    "quality": quality.build,
    "retraining": retraining.build,
}

__all__ = ["BOARDS"]
