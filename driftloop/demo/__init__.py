"""`driftloop demo`: the whole loop on the local stack, each service its own process (see loop.py)."""

from driftloop.demo.loop import run_demo
from driftloop.demo.runs import DemoRunning

__all__ = ["DemoRunning", "run_demo"]
