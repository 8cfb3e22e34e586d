"""Admin list paging: `order-by`, `offset`, `limit` in; `{meta, results}` out (Propexo's shape).

`meta.orderBy` is a list of `{field: direction}` objects, as Propexo answers it. `limit` and
`offset` take what Propexo's clients send: `limit=0` (a page of no results, with the total),
and an empty or `null` value (the default)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from pydantic import BeforeValidator, Field
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from pmsq.errors import ValidationFailed

MAX_LIMIT = 250
DEFAULT_LIMIT = 100
#: Propexo pages write logs by at most 100; a larger limit gets 100.
MAX_WRITE_LOG_LIMIT = 100
#: Deepest offset accepted; beyond it lists are better filtered than paged.
MAX_OFFSET = 1_000_000_000


def _blank_is_none(value: Any) -> Any:
    """A query value of "" or "null" means "not given" (Propexo's `integer | null`)."""
    if isinstance(value, str) and value.strip().lower() in ("", "null"):
        return None
    return value


#: Query values of Propexo's `integer | null` (the validator runs before the bounds).
Offset = Annotated[
    Annotated[int, Field(ge=0, le=MAX_OFFSET)] | None, BeforeValidator(_blank_is_none), Query()
]
#: A boolean filter of Propexo's `boolean | null`: "null" (or empty) means no filter.
NullableBool = Annotated[bool | None, BeforeValidator(_blank_is_none), Query()]
Limit = Annotated[
    Annotated[int, Field(ge=0, le=MAX_LIMIT)] | None, BeforeValidator(_blank_is_none), Query()
]


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
    offset: Offset = 0,
    limit: Limit = DEFAULT_LIMIT,
) -> PageRequest:
    return PageRequest(
        0 if offset is None else offset, DEFAULT_LIMIT if limit is None else limit, order_by
    )


def paginate(
    session: Session,
    stmt: Select[Any],
    page: PageRequest,
    sortable: Mapping[str, Any],
    default: str,
    render: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """One page of `stmt`, ordered by a whitelisted field, with the total count."""
    return _page(session, stmt, page, sortable, default, _each(render), scalars=True)


def paginate_batched(
    session: Session,
    stmt: Select[Any],
    page: PageRequest,
    sortable: Mapping[str, Any],
    default: str,
    render_page: Callable[[Sequence[Any]], list[dict[str, Any]]],
) -> dict[str, Any]:
    """`paginate`, with `render_page` given the page's rows at once: what it reads for them
    it can read in one query, not one per row."""
    return _page(session, stmt, page, sortable, default, render_page, scalars=True)


def paginate_rows(
    session: Session,
    stmt: Select[Any, Any, Any],
    page: PageRequest,
    sortable: Mapping[str, Any],
    default: str,
    render: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """`paginate` of a statement selecting several columns: `render` gets each row."""
    return _page(session, stmt, page, sortable, default, _each(render), scalars=False)


def _each(
    render: Callable[[Any], dict[str, Any]],
) -> Callable[[Sequence[Any]], list[dict[str, Any]]]:
    return lambda rows: [render(row) for row in rows]


def _page(
    session: Session,
    stmt: Select[Any] | Select[Any, Any, Any],
    page: PageRequest,
    sortable: Mapping[str, Any],
    default: str,
    render_page: Callable[[Sequence[Any]], list[dict[str, Any]]],
    *,
    scalars: bool,
) -> dict[str, Any]:
    field, direction = _parse_order(page.order_by or default, sortable)
    column = sortable[field]
    ordered = column.desc() if direction == "desc" else column.asc()
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    window = stmt.order_by(ordered).offset(page.offset).limit(page.limit)
    rows = session.scalars(window).all() if scalars else session.execute(window).all()
    return {
        "meta": {
            "offset": page.offset,
            "limit": page.limit,
            "orderBy": [{field: direction}],
            "hasMore": page.offset + len(rows) < total,
            "total": total,
        },
        "results": render_page(rows),
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


def single(result: Any, order_by: str = "created_at:desc") -> dict[str, Any]:
    """One resource in Propexo's `{meta, results}` envelope, `results` being the object."""
    field, _, direction = order_by.partition(":")
    return {
        "meta": {
            "offset": 0,
            "limit": DEFAULT_LIMIT,
            "orderBy": [{field: direction}],
            "hasMore": False,
            "total": 1,
        },
        "results": result,
    }
