"""merger subscriptions: it waits for both review and tests (the handler decides when both exist)."""

from services.merger import handlers
from shared.messaging.consumer import Route

# No step here: the handler records the merge bead itself, only when it actually acts.
ROUTES = [
    Route("ChangesReviewed", handlers.on_review_or_tests),
    Route("TestsCompleted", handlers.on_review_or_tests),
]
