"""Kubernetes objects of each tenant: rendering (manifests) and server-side apply (applier)."""

__all__: list[str] = []
