"""suggester subscriptions."""

from services.suggester import handlers
from shared.messaging.consumer import Route

ROUTES = [Route("RepoAnalyzed", handlers.on_repo_analyzed, step="suggest")]
