"""`featureplane docs generate [--check]`: the reference tables in docs/, generated from the code.

``docs/configuration.md`` lists every :class:`~featureplane.settings.Settings` field as its
``FEATUREPLANE_*`` variable, and ``docs/commands.md`` every command of the typer app, each
between ``<!-- BEGIN GENERATED: … -->`` and ``<!-- END GENERATED: … -->`` markers; the prose
around them is hand-written. ``make lint`` runs ``--check``, so a new setting or command without
its row fails the build.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo

from featureplane.cli._common import console, load_settings
from featureplane.errors import FeatureplaneError
from featureplane.settings import Settings

docs_app = typer.Typer(
    help="Reference tables in docs/, generated from the code.", no_args_is_help=True
)


def _cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped, ``<…>`` outside code spans escaped (it
    would read as an HTML tag)."""
    spans = " ".join(text.split()).replace("|", "\\|").split("`")
    for i in range(0, len(spans), 2):  # the even pieces are outside code spans
        spans[i] = spans[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(spans)


def _default(field: FieldInfo) -> str:
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`" if not isinstance(value, list) else f"`{value!r}`"


def settings_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for name, field in Settings.model_fields.items():
        rows.append(
            f"| `{prefix}{name.upper()}` | {_default(field)} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows)


# typer 0.29 ships click as typer._click: its classes are duck-typed here, not imported.


def _signature(command: Any) -> str:
    parts = []
    for param in command.params:
        if param.param_type_name == "argument":
            name = f"<{(param.name or '').lower()}>"
            parts.append(name if param.required else f"[{name}]")
        elif param.param_type_name == "option" and not param.hidden and param.name != "help":
            flag = max(param.opts, key=len)
            name = param.metavar or flag.lstrip("-").replace("-", "_").upper()
            value = "" if param.is_flag else f" {name}"
            parts.append(f"[{flag}{value}]")
    return " ".join(parts)


def _commands(group: Any, path: str, ctx: Any) -> list[tuple[str, str]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        if hasattr(command, "list_commands"):
            found += _commands(command, f"{path} {name}", ctx)
        else:
            usage = f"{path} {name} {_signature(command)}".strip()
            summary = (command.help or "").split("\n\n")[0]
            found.append((usage, summary))
    return found


def commands_table(root: Any) -> str:
    """Every command under ``root`` (the app's click group), one row each."""
    rows = ["| command | what it does |", "| --- | --- |"]
    with root.context_class(root, info_name="featureplane") as ctx:
        for usage, summary in _commands(root, "featureplane", ctx):
            rows.append(f"| `{usage}` | {_cell(summary)} |")
    return "\n".join(rows)


TABLES = {
    "configuration.md": ("settings", settings_table),
    "commands.md": ("commands", commands_table),
}


def render(text: str, marker: str, table: str) -> str:
    pattern = re.compile(
        rf"(<!-- BEGIN GENERATED: {marker} [^>]*-->\n).*?(\n<!-- END GENERATED: {marker} -->)",
        re.S,
    )
    if not pattern.search(text):
        raise FeatureplaneError(f"no '<!-- BEGIN GENERATED: {marker} …-->' markers")
    return pattern.sub(lambda m: f"{m.group(1)}{table}{m.group(2)}", text)


@docs_app.command("generate")
def generate(
    ctx: typer.Context,
    check: Annotated[bool, typer.Option(help="Fail if the committed tables are stale.")] = False,
) -> None:
    """Write the settings and command tables into docs/configuration.md and docs/commands.md."""
    docs = load_settings().tenants_path.parent / "docs"  # docs/ sits beside tenants/
    tables = {
        "configuration.md": ("settings", settings_table),
        "commands.md": ("commands", lambda: commands_table(ctx.find_root().command)),
    }
    stale = []
    for file, (marker, build) in tables.items():
        path = docs / file
        try:
            current = path.read_text()
        except OSError as exc:
            raise FeatureplaneError(f"{path}: cannot be read: {exc.strerror}") from exc
        try:
            wanted = render(current, marker, build())
        except FeatureplaneError as exc:
            raise FeatureplaneError(f"{path}: {exc}") from None
        if wanted == current:
            continue
        if check:
            stale.append(str(path))
        else:
            Path(path).write_text(wanted)
            console.print(f"wrote {path}")
    if stale:
        raise FeatureplaneError(f"stale: {', '.join(stale)}: run `featureplane docs generate`")
    if check:
        console.print(f"[green]ok[/] the generated tables in {docs} are current")
