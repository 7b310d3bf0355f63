"""Leases in the registry database: at most one holder of a name at a time, and never forever.

A lease is taken for `ttl_s` seconds and renewed by its holder while it works; a holder that
crashed stops renewing, and once its lease expired anyone may take it. Taking, renewing and
releasing are each one `BEGIN IMMEDIATE` transaction, so two processes racing for a free
lease cannot both win. The retrain service holds `retrain:<model>` while it runs an episode
of that model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from driftloop.retrain.database import Database

__all__ = ["Lease", "LeaseLost", "Leases"]


class LeaseLost(RuntimeError):
    """The lease expired and someone else holds it now: stop the work it guarded."""


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    acquired_at: float
    expires_at: float


class Leases:
    def __init__(self, database: Database, clock=time.time) -> None:
        self.database = database
        self.clock = clock

    def acquire(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take `name` for `ttl_s` seconds; None if another holder's lease has not expired yet.

        The same holder taking it again renews it.
        """
        if ttl_s <= 0:
            raise ValueError(f"'ttl_s' must be positive, got {ttl_s}")
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("SELECT holder, acquired_at, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["holder"] != holder and row["expires_at"] > now:
                return None
            acquired = row["acquired_at"] if row is not None and row["holder"] == holder else now
            db.execute("""INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)
                          ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                          acquired_at = excluded.acquired_at, expires_at = excluded.expires_at""",
                       (name, holder, acquired, now + ttl_s))
        return Lease(name, holder, acquired, now + ttl_s)

    def renew(self, name: str, holder: str, ttl_s: float) -> Lease:
        """Extend a lease this holder has; LeaseLost if it expired and was taken, or was never held."""
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("SELECT holder, acquired_at, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if row is None or row["holder"] != holder:
                raise LeaseLost(f"lease {name!r} is held by {row['holder'] if row else 'nobody'}, not {holder}")
            db.execute("UPDATE leases SET expires_at = ? WHERE name = ?", (now + ttl_s, name))
        return Lease(name, holder, row["acquired_at"], now + ttl_s)

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up; False when this holder did not hold it."""
        with self.database.transaction() as db:
            cursor = db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
        return cursor.rowcount > 0

    def holder(self, name: str) -> Lease | None:
        """The current, unexpired lease on `name`, if any."""
        row = self.database.connection().execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None or row["expires_at"] <= self.clock():
            return None
        return Lease(row["name"], row["holder"], row["acquired_at"], row["expires_at"])
