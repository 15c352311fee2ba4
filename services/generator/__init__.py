"""The generator service: one attempt per FeatureGenerationRequested (see `shared.engines.generator`)."""
