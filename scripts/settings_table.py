"""Print the configuration table for README.md from ``tenantflow.settings.Settings``.

Run: ``.venv/bin/python scripts/settings_table.py``. The meaning column is the field's
``description`` if it has one, else the comment above the field (or above its group of fields) in
settings.py, so the table stays as true as that file.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tenantflow import settings as settings_module  # noqa: E402
from tenantflow.settings import Settings  # noqa: E402


def field_comments() -> dict[str, str]:
    """Field name → the comment block above it, looking past the fields of its group."""
    lines = inspect.getsource(settings_module).splitlines()
    cls = next(n for n in ast.parse("\n".join(lines)).body
               if isinstance(n, ast.ClassDef) and n.name == Settings.__name__)
    comments: dict[str, str] = {}
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        i = node.lineno - 2  # the line above, 0-based
        while i >= 0 and lines[i].strip() and not lines[i].strip().startswith("#"):
            i -= 1  # another field of the same group
        block: list[str] = []
        while i >= 0 and lines[i].strip().startswith("#"):
            block.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        comments[node.target.id] = " ".join(block)
    return comments


def default_text(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return ""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    value = getattr(value, "value", value)
    return f"`{value}`" if value != "" else "(empty)"


def table() -> str:
    prefix = Settings.model_config.get("env_prefix", "")
    comments = field_comments()
    rows = ["| Setting | Environment variable | Default | Meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        meaning = field.description or comments.get(name, "")
        if field.annotation is SecretStr:
            meaning = f"{meaning} (secret)".strip()
        meaning = meaning.replace("|", "\\|")
        rows.append(f"| `{name}` | `{prefix}{name.upper()}` | {default_text(field)} | {meaning} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
