"""The base of every sequential detector, shaped like River's ``river/base/drift_detector.py``.

A detector reads one value at a time: ``update(x)`` returns the detector, and
``drift_detected`` is true only right after the sample that triggered an alarm.
After an alarm the detector restarts on its own at the next update (River's
convention), so ``update`` can be called forever without ``reset``.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Iterable


class DriftDetector(abc.ABC):
    """A sequential change detector with River's API.

    Subclasses store their parameters as given, validate them in ``__init__``,
    keep their running state in ``_restart`` and implement ``update``.
    """

    #: Whether the detector reads only error bits (1 = error, 0 = correct).
    binary_input: bool = False

    def __init__(self) -> None:
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update triggered an alarm."""
        return self._drift_detected

    @abc.abstractmethod
    def _restart(self) -> None:
        """Forget the stream seen so far (after an alarm, or on ``reset``)."""

    @abc.abstractmethod
    def update(self, x: float) -> DriftDetector:
        """Read one value; return ``self``."""

    def reset(self) -> DriftDetector:
        """Return the detector to its freshly constructed state; return ``self``."""
        self._drift_detected = False
        self._restart()
        return self

    def update_many(self, xs: Iterable[float]) -> list[int]:
        """Feed ``xs`` in order; return the positions (0-based in ``xs``) that raised an alarm."""
        alarms = []
        update = self.update
        for i, x in enumerate(xs):
            if update(x)._drift_detected:
                alarms.append(i)
        return alarms

    def params(self) -> dict:
        """The constructor's parameters, as given."""
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    def state_dict(self) -> dict:
        """The running state (everything but the parameters) as JSON values, to resume the stream later.

        Raises ``TypeError`` when part of it is not numbers, strings, booleans, None or lists
        of them (a detector wrapping another library's object): replay its stream instead.
        """
        params = self.params()
        return {name: _plain(name, value) for name, value in vars(self).items() if name not in params}

    def load_state_dict(self, state: dict) -> DriftDetector:
        """Resume from the ``state_dict()`` of a detector of the same class and parameters; return ``self``.

        Raises ``ValueError`` when ``state`` lacks an attribute this detector keeps (another layout).
        """
        missing = set(self.state_dict()) - set(state)
        if missing:
            raise ValueError(f"state of another {type(self).__name__} layout: it lacks {sorted(missing)}")
        for name, value in state.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def _plain(name: str, value):
    """`value` as plain JSON types (NumPy scalars become Python numbers), or TypeError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(name, item) for item in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a NumPy scalar
        value = value.item()
    if isinstance(value, (int, float)):
        return value
    raise TypeError(f"cannot snapshot {name!r} of type {type(value).__name__}")


def check_in_range(name: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise ``ValueError`` naming the parameter and its valid range unless ``low <= value <= high``."""
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and ok_low and ok_high):
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"Invalid '{name}': {value!r}. Valid values are numbers in {left}{low}, {high}{right}.")


def check_choice(name: str, value: object, valid: tuple) -> None:
    """Raise ``ValueError`` naming the parameter and listing the valid values unless ``value in valid``."""
    if value not in valid:
        raise ValueError(f"Invalid '{name}': {value!r}. Valid values are: {list(valid)}")
