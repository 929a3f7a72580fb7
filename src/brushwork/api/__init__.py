"""The HTTP API: `create_app(settings)` builds a FastAPI app whose lifespan owns the job service."""
