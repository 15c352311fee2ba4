"""The event store: Postgres is the source of truth (DESIGN section 3).

Where events are stored: `postgres.py` (the `events`, `tracking` and `checkpoints` tables are
declared in `migrations/`).
"""

from shared.store.errors import AlreadyProcessed, ConcurrencyError, EventTooLarge, MigrationChanged
from shared.store.postgres import PostgresEventStore, migrate, row_to_envelope

__all__ = [
    "AlreadyProcessed", "ConcurrencyError", "EventTooLarge", "MigrationChanged", "PostgresEventStore", "migrate",
    "row_to_envelope",
]
