"""Tenants' on-demand feature views, computed outside the gateway: ``protocol`` (the wire),
``worker`` (the sandboxed process that runs tenant code), ``pool`` (the gateway's supervisor).
See docs/transforms.md."""

__all__: list[str] = []
