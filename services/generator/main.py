"""generator subscriptions: one attempt per FeatureGenerationRequested, spread across replicas."""

from services.generator import handlers
from shared.messaging.consumer import Route

# The handler records its own beads (prompt, agent, validate) through the events it emits.
ROUTES = [Route("FeatureGenerationRequested", handlers.on_feature_generation_requested)]
