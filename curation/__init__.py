"""Curation: active-learning strategies, budgeted selection, the labelling round trip, snapshots."""

__all__: list[str] = []
