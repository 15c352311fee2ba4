"""executor subscriptions."""

from services.executor import handlers
from shared.messaging.consumer import Route

ROUTES = [Route("ImprovementsSuggested", handlers.on_improvements_suggested, step="execute")]
