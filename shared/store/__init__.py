"""The event store: Postgres is the source of truth (DESIGN section 3).

Where events are stored: `postgres.py` (the `events`, `tracking` and `checkpoints` tables are
declared in `migrations/`).
"""

from shared.store.errors import AlreadyProcessed, ConcurrencyError, EventTooLarge, MigrationChanged
from shared.store.postgres import PostgresEventStore, migrate
from shared.store.rows import BadRow, decode_row

__all__ = [
    "AlreadyProcessed", "BadRow", "ConcurrencyError", "EventTooLarge", "MigrationChanged", "PostgresEventStore",
    "decode_row", "migrate",
]
