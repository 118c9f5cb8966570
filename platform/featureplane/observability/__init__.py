"""Metrics (one module), and the middleware that records them."""
