class ConcurrencyError(Exception):
    """Another writer appended to the stream first: the expected version no longer holds."""

    def __init__(self, stream_id: str, expected: int, actual: int):
        super().__init__(f"stream {stream_id}: expected version {expected}, found {actual}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class AlreadyProcessed(Exception):
    """The tracking row (consumer, event id) exists: the event was handled before."""

    def __init__(self, consumer: str, event_id):
        super().__init__(f"{consumer} already processed event {event_id}")
        self.consumer = consumer
        self.event_id = event_id


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
