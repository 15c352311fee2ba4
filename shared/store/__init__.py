"""The event store: Postgres is the source of truth (DESIGN section 3).

Where events are stored: `postgres.py` (the `events`, `tracking` and `checkpoints` tables are
declared in `migrations/`). The SQL the app and the sweeper ask (stalled runs, the target lock of
a new run) is in `queries.py`.
"""

from shared.store.errors import AlreadyProcessed, ConcurrencyError, EventTooLarge, MigrationChanged
from shared.store.postgres import PostgresEventStore, migrate
from shared.store.rows import BadRow, decode_row

__all__ = [
    "AlreadyProcessed", "BadRow", "ConcurrencyError", "EventTooLarge", "MigrationChanged", "PostgresEventStore",
    "decode_row", "migrate",
]
