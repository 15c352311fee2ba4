"""Errors of the event store. Those raised through the EventStore port (ConcurrencyError,
AlreadyProcessed) live with the port, in `shared.ports.errors`, and are re-exported here."""

from shared.ports.errors import AlreadyProcessed, ConcurrencyError, EventTooLarge

__all__ = ["AlreadyProcessed", "ConcurrencyError", "EventTooLarge", "MigrationChanged"]


class MigrationChanged(Exception):
    """A migration that was applied to this database has been edited since: the schema it built
    is not what the file now says, so start-up stops rather than run on an unknown schema."""

    def __init__(self, schema: str, name: str, recorded: str, current: str):
        super().__init__(
            f"migration {name} was applied to schema {schema!r} from a different file "
            f"(recorded sha256 {recorded[:12]}, now {current[:12]}). Migrations are never edited once "
            f"shipped: restore shared/store/migrations/{name} and put the change in a new migration."
        )
        self.schema, self.name = schema, name
