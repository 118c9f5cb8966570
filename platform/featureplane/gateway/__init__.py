"""The multi-tenant online feature gateway (FastAPI)."""
