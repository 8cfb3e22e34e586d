"""Admin list paging: `order-by`, `offset`, `limit` in; `{meta, results}` out (Propexo's shape)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Query
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from pmsq.errors import ValidationFailed

MAX_LIMIT = 250
DEFAULT_LIMIT = 100
#: Deepest offset accepted; beyond it lists are better filtered than paged.
MAX_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class PageRequest:
    offset: int
    limit: int
    order_by: str | None


def page_request(
    order_by: str | None = Query(
        default=None,
        alias="order-by",
        description='A field, optionally with ":asc" or ":desc" (e.g. "created_at:desc")',
    ),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
    limit: int = Query(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
) -> PageRequest:
    return PageRequest(offset, limit, order_by)


def paginate(
    session: Session,
    stmt: Select[Any],
    page: PageRequest,
    sortable: Mapping[str, Any],
    default: str,
    render: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """One page of `stmt`, ordered by a whitelisted field, with the total count."""
    field, direction = _parse_order(page.order_by or default, sortable)
    column = sortable[field]
    ordered = column.desc() if direction == "desc" else column.asc()
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(ordered).offset(page.offset).limit(page.limit)).all()
    return {
        "meta": {
            "offset": page.offset,
            "limit": page.limit,
            "orderBy": f"{field}:{direction}",
            "hasMore": page.offset + len(rows) < total,
            "total": total,
        },
        "results": [render(row) for row in rows],
    }


def _parse_order(raw: str, sortable: Mapping[str, Any]) -> tuple[str, str]:
    field, _, direction = raw.partition(":")
    if field.startswith("-"):
        field, direction = field[1:], "desc"
    direction = direction or "asc"
    if field not in sortable or direction not in ("asc", "desc"):
        raise ValidationFailed(
            f"cannot order by '{raw}'; use one of {', '.join(sorted(sortable))} "
            'with an optional ":asc" or ":desc"',
            [{"field": "order-by", "reason": "unknown field or direction"}],
        )
    return field, direction
