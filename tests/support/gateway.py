"""The real gateway in a subprocess, and what its requests and answers look like."""

from __future__ import annotations

from typing import Any

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import free_port
from featureplane.settings import Settings


def start_gateway(settings: Settings, workers: int = 2) -> GatewayProcess:
    """The real gateway: `featureplane serve` in a subprocess on a free port."""
    return GatewayProcess(settings, free_port(), workers).start()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def columns_by_name(answer: dict[str, Any]) -> dict[str, list[Any]]:
    """A get-online-features answer's values, by feature name."""
    return {
        name: col["values"]
        for name, col in zip(answer["metadata"]["feature_names"], answer["results"], strict=True)
    }
