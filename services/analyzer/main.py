"""analyzer subscriptions: each route parses an event and delegates to a handler."""

from services.analyzer import handlers
from shared.messaging.consumer import Route

ROUTES = [
    Route("PipelineRequested", handlers.on_pipeline_requested, step="analyze"),
    Route("MergeCompleted", handlers.on_merge_completed, step="docs"),
    # No bead: the run has ended; this only writes its log, now that every event is stored.
    Route("PipelineCompleted", handlers.on_run_ended),
    Route("PipelineFailed", handlers.on_run_ended),
]
