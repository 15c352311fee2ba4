"""merger subscriptions: the review comes after the tests, so the review is what it waits for."""

from services.merger import handlers
from shared.messaging.consumer import Route

ROUTES = [Route("ChangesReviewed", handlers.on_changes_reviewed, step="merge")]
