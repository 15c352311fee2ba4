"""tester subscriptions."""

from services.tester import handlers
from shared.messaging.consumer import Route

ROUTES = [Route("ChangesCommitted", handlers.on_changes_committed, step="test")]
