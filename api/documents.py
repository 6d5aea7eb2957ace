"""The status read's document built by Postgres: ``GET /v1/projects/{ref}`` in one statement.

The statement returns the JSON text of the document ``ProjectDetail.from_rows`` makes (the same
value, its keys in the same order, the steps in ``catalog.step_order``, timestamps written as
pydantic writes them; only the spacing differs), so the route sends Postgres' bytes as they are:
no rows, no models, no encoder in Python. It is derived from the response models, so the
document's shape is defined once, there: each field of ``ProjectDetail``, ``GraphInfo`` and
``StepOut`` is the column of the same name (``GraphInfo``'s with its ``COLUMN_PREFIX``), except
those in ``_PROJECT_SPECIAL`` and ``_STEP_SPECIAL``; a field added to a model without a column to
read it from stops the import. ``tests/api/test_status_document.py`` compares the two documents
for tenants in every state.

The statement is compiled once for an id and once for a name (SQLAlchemy Core, the store's tables
and its name lookup). ``{ref}`` is a bind parameter; our own constants (the step orders, the
timestamp formats) are written into the statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.sql.elements import ColumnElement

from api.schemas import GraphInfo, ProjectDetail, StepOut
from tenantflow.catalog import STEPS_BY_KIND, step_order
from tenantflow.names import canonical_uuid
from tenantflow.read_pool import ReadPool
from tenantflow.store import P, S, id_of_name

# pydantic's text of an aware UTC datetime: "2026-11-23T21:21:27.317934Z", no fraction when zero.
_WHOLE_SECONDS, _WITH_MICROSECONDS = 'YYYY-MM-DD"T"HH24:MI:SS"Z"', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
_KEY = re.compile(r"[a-z][a-z0-9_]*")
_LAST = 2**31 - 1  # the rank of a step the catalog does not list


def _const(value: Any, type_: Any = Text) -> ColumnElement[Any]:
    """A constant of ours, written into the statement (compiled once) rather than sent with each read."""
    return literal(value, type_, literal_execute=True)


def utc_text(column: Any) -> ColumnElement[Any]:
    """A ``timestamptz`` as the text pydantic writes for it (the same instant, in UTC)."""
    utc = func.timezone(_const("UTC"), column)
    whole_seconds = func.date_trunc(_const("second"), column) == column
    return case((whole_seconds, func.to_char(utc, _const(_WHOLE_SECONDS))),
                else_=func.to_char(utc, _const(_WITH_MICROSECONDS)))


def _column(table: Any, name: str) -> ColumnElement[Any]:
    column = table.c[name]  # a KeyError here: a model field with no column of its name
    return utc_text(column) if isinstance(column.type, DateTime) else column


def json_object(model: type[BaseModel], value_of: Callable[[str], ColumnElement[Any]]) -> ColumnElement[Any]:
    """``json_build_object`` of ``model``'s fields, in their order, each valued ``value_of(field)``."""
    pairs: list[Any] = []
    for field in model.model_fields:
        if not _KEY.fullmatch(field):
            raise ValueError(f"{model.__name__}.{field} cannot be a JSON key written into SQL")
        pairs += [literal_column(f"'{field}'"), value_of(field)]
    return func.json_build_object(*pairs)


def _catalog_rank() -> ColumnElement[Any]:
    """A step row's place in ``step_order`` of its tenant's kind (unknown steps last)."""
    def names(kind: str) -> ColumnElement[Any]:
        return _const([str(step) for step in step_order(kind)], ARRAY(Text))

    order = case(*((P.c.kind == _const(str(kind)), names(kind)) for kind in STEPS_BY_KIND), else_=names(""))
    return func.coalesce(func.array_position(order, cast(S.c.step_name, Text)), _const(_LAST, Integer))


def _steps() -> ColumnElement[Any]:
    step = json_object(StepOut, lambda field: _STEP_SPECIAL[field] if field in _STEP_SPECIAL
                       else _column(S, field))
    # The order of StepOut.from_rows: catalog rank, then creation, then name (code point order).
    ordered = aggregate_order_by(step, _catalog_rank(), S.c.created_at, S.c.step_name.collate("C"))
    return (
        select(func.coalesce(func.json_agg(ordered), literal_column("'[]'::json")))
        .where(S.c.project_id == P.c.id)
        .scalar_subquery()
    )


def _graph() -> ColumnElement[Any]:
    absent = and_(*(P.c[column].is_(None) for column in GraphInfo.PRESENT_WHEN_ANY_OF))
    graph = json_object(GraphInfo, lambda field: _column(P, GraphInfo.COLUMN_PREFIX + field))
    return case((absent, null()), else_=graph)


# The fields that are not simply the column of their name.
_STEP_SPECIAL: dict[str, ColumnElement[Any]] = {
    "name": S.c.step_name,
    "attempts": null(),  # given by the steps endpoint only
}
_PROJECT_SPECIAL: dict[str, Callable[[], ColumnElement[Any]]] = {"graph": _graph, "steps": _steps}


@dataclass(frozen=True)
class Statement:
    """SQL text for psycopg and the values of the constants it binds."""

    sql: str
    constants: dict[str, Any]

    def params(self, **given: Any) -> dict[str, Any]:
        return {**self.constants, **given}


def _compile(where: ColumnElement[bool]) -> Statement:
    document = json_object(ProjectDetail, lambda field: _PROJECT_SPECIAL[field]() if field in _PROJECT_SPECIAL
                           else _column(P, field))
    compiled = select(cast(document, Text)).where(where).compile(
        dialect=psycopg_dialect(), compile_kwargs={"render_postcompile": True})
    return Statement(compiled.string, dict(compiled.params))


BY_ID = _compile(P.c.id == bindparam("id", type_=Uuid, required=False))
BY_NAME = _compile(P.c.id == id_of_name(bindparam("name", type_=Text, required=False)))


async def project_detail(reads: ReadPool, ref: str) -> bytes | None:
    """The ``ProjectDetail`` JSON of the tenant ``ref`` names, an id or a name (as
    ``Store.get_project_by_ref``); None when there is none.

    Raises:
        MirrorUnavailable: the mirror database cannot be reached.
    """
    project_id = canonical_uuid(ref)
    if project_id is not None:
        text = await reads.fetch_value(BY_ID.sql, BY_ID.params(id=project_id))
    else:
        text = await reads.fetch_value(BY_NAME.sql, BY_NAME.params(name=ref))
    return text.encode() if text is not None else None
