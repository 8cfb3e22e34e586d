"""The write routes are matched early (every write is matched against the routes before
them) and take no request meant for a route after them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import fakeredis
from fastapi.routing import APIRoute

from pmsq.api.app import create_app
from pmsq.models.db import make_engine, make_session_factory
from pmsq.settings import Settings
from pmsq.workers.flow.redis_backend import RedisFlowControl
from pmsq.workers.publisher import AdmittedJob


class NoPublisher:
    def publish(self, job: AdmittedJob) -> None:
        raise AssertionError("nothing is published here")


def api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """The app's API routes in matching order, those of included routers in their place."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps routers whole
        if included is not None:
            yield from api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def takes(route: APIRoute, other: APIRoute) -> bool:
    """Whether `route` would take a request for `other` (a common method, and `other`'s
    path, with a value for each parameter, matches `route`'s)."""
    example = re.sub(r"{[^}]+}", "x", other.path)
    return bool(route.methods & other.methods) and route.path_regex.match(example) is not None


def test_the_write_routes_take_no_request_meant_for_a_route_after_them() -> None:
    engine = make_engine("sqlite://")
    try:
        app = create_app(
            Settings(database_url="sqlite://"),
            make_session_factory(engine),
            NoPublisher(),
            RedisFlowControl(fakeredis.FakeRedis()),
        )
    finally:
        engine.dispose()
    routes = list(api_routes(app.routes))
    writes = [route for route in routes if route.tags == ["writes"]]
    assert [route.path for route in writes] == ["/v1/{model}/", "/v1/{model}/{record_id}"]
    first = routes.index(writes[0])
    before, after = routes[:first], routes[first + len(writes) :]
    # They would take `/v1/webhooks/...` for a model: those routes come first.
    shadowed_before = [r.path for r in before if any(takes(w, r) for w in writes)]
    assert shadowed_before == ["/v1/webhooks/", "/v1/webhooks/{webhook_id}"]
    assert len(after) > 40
    assert [r.path for r in after if any(takes(w, r) for w in writes)] == []
