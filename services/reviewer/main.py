"""reviewer subscriptions: it reviews once the tests have run, so the score includes their results."""

from services.reviewer import handlers
from shared.messaging.consumer import Route

ROUTES = [Route("TestsCompleted", handlers.on_tests_completed, step="review")]
