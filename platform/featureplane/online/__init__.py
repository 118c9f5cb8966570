"""The online store: Feast's Redis layout and value codec (read and write), RESP framing, cluster
slot routing, Redis URLs and the one factory of Redis clients and connections."""

__all__: list[str] = []
