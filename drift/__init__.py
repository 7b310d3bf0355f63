"""Drift detection: reference profiles, window statistics, sequential detectors, the monitor."""

__all__: list[str] = []
