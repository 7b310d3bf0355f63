"""A sequential detector that can be saved and resumed: its state, or the bits it read since its last alarm.

The monitor saves each detector after every run. Two ways to bring it back, best first:

1. the detector's own `state_dict()` (our detectors give one: their running state as JSON),
   loaded into a detector built with the same class and parameters;
2. a replay of the bits it read since its last alarm, up to `TAIL_BITS`. A detector that follows
   River's convention restarts after each alarm, so its state is a function of those bits alone:
   the replay is exact while the tail is complete, and an approximation past `TAIL_BITS`. This
   is what a detector that cannot snapshot (one wrapping River's, say) or whose parameters
   changed gets; alarms during the replay are not reported again.

Either way a restart costs at most `TAIL_BITS` updates, never a re-read of the store.
"""

from __future__ import annotations

import base64
import json
import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["TAIL_BITS", "TrackedDetector"]

TAIL_BITS = 100_000


class TrackedDetector:
    """One detector of the monitor, with the bits it read since its last alarm."""

    def __init__(self, name: str, detector) -> None:
        self.name = name
        self.detector = detector
        self._tail = bytearray()

    def update(self, bit: int) -> bool:
        """Feed one bit; True when it raised an alarm."""
        self.detector.update(bit)  # River's return None, ours self: use neither
        alarmed = bool(self.detector.drift_detected)
        if alarmed:
            self._tail.clear()
        else:
            self._tail.append(bit)
            if len(self._tail) > 2 * TAIL_BITS:
                del self._tail[: len(self._tail) - TAIL_BITS]
        return alarmed

    def record(self) -> dict:
        """What `restore` needs: the detector's class, parameters, state (when it can give one) and tail."""
        tail = bytes(self._tail[-TAIL_BITS:])
        try:
            state = self.detector.state_dict()
            json.dumps(state)
        except (AttributeError, TypeError, ValueError):
            state = None
        return {
            "class": type(self.detector).__name__,
            "params": _params(self.detector),
            "state": state,
            "tail_bits": len(tail),
            "tail": base64.b64encode(np.packbits(np.frombuffer(tail, dtype=np.uint8)).tobytes()).decode(),
        }

    @classmethod
    def restore(cls, name: str, detector, record: dict) -> TrackedDetector:
        """`detector` (freshly built) brought to where the saved one was."""
        tracked = cls(name, detector)
        packed = np.frombuffer(base64.b64decode(record.get("tail", "")), dtype=np.uint8)
        tail = np.unpackbits(packed)[: int(record.get("tail_bits", 0))]
        tracked._tail = bytearray(tail.tobytes())
        same = record.get("class") == type(detector).__name__ and record.get("params") == _params(detector)
        if same and record.get("state") is not None:
            try:
                detector.load_state_dict(record["state"])
                return tracked
            except (AttributeError, TypeError, ValueError) as error:
                log.warning("detector %s: saved state not loadable (%s); replaying its last %d bits", name, error, len(tail))
        for bit in tail.tolist():  # a fresh detector, or another configuration of it: replay
            detector.update(bit)
        return tracked


def _params(detector) -> dict:
    """The constructor parameters, as JSON values (River's `_get_params` when the detector is River's)."""
    getter = getattr(detector, "params", None) or getattr(detector, "_get_params", None)
    params = getter() if callable(getter) else {}
    return json.loads(json.dumps(params, default=repr))
