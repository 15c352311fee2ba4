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
