"""The HTTP API (`rag api`): REST endpoints, an OpenAI-compatible chat endpoint, API keys and collections."""
