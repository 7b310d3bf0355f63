"""The composition root: settings, the `driftloop` CLI, the local stack, the demo."""
