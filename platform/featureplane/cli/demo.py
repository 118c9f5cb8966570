"""`featureplane demo`: the whole path on the embedded default (:mod:`featureplane.demo`)."""

from __future__ import annotations

from typing import Annotated

import typer

from featureplane.cli._common import console


def demo(
    once: Annotated[
        bool, typer.Option("--once", help="Stop after the calls instead of serving.")
    ] = False,
    rows: Annotated[int, typer.Option(min=1, help="Entities per sample source.")] = 1000,
) -> None:
    """Everything on the embedded default: data, apply, materialize, gateway, real calls."""
    from featureplane.demo import run_demo

    run_demo(console, once=once, rows=rows)
