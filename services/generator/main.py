"""generator subscriptions: one step of an attempt per event, spread across replicas."""

from services.generator import handlers
from shared.messaging.consumer import Route

ROUTES = [
    Route("FeatureGenerationRequested", handlers.on_feature_generation_requested, step="prompt"),
    Route("FeaturePromptBuilt", handlers.on_feature_prompt_built, step="agent"),
    Route("FeatureGenerated", handlers.on_feature_generated, step="validate"),
]
