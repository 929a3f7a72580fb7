"""Route groups: native v1 and health/metrics (A1111- and OpenAI-compatible routes come next)."""
