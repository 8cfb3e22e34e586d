"""The HTTP connector decides once whether a failed write's outcome is known, and reads back
only the record that this very write created.

Driven through `httpx.MockTransport`: the handler plays the PMS, with its own list of records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pmsq.errors import PmsError, PmsThrottled
from pmsq.pms.connector import Exchange, Step
from pmsq.pms.http import body_text
from pmsq.pms.http_connector import HttpConnector
from pmsq.pms.profiles import CREATE, UPDATE, VendorProfile
from pmsq.pms.registry import VENDORS, profile_for

Handler = Callable[[httpx.Request], httpx.Response]
BASE_URL = "http://pms.test/t/acme"
PAYLOAD = {"last_name": "Curie", "email_1": "m@c.fr"}
ACCEPTED_AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def connector(profile: VendorProfile, handler: Handler) -> HttpConnector:
    return VENDORS.get(profile.vendor).connector(
        base_url=BASE_URL,
        credentials={"api_key": "secret-key-0123456789"},
        client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def create_step(*, outcome_unknown: bool = False, key: str = "key-new") -> Step:
    return Step(
        "residents",
        CREATE,
        None,
        dict(PAYLOAD),
        idempotency_key=key,
        outcome_unknown=outcome_unknown,
        accepted_at=ACCEPTED_AT,
    )


def failing_with(failure: int | type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(failure, int):
            return httpx.Response(failure, json={"error": "injected"})
        raise failure("injected", request=request)

    return handler


class FakePms:
    """Records in creation order; lists filter by field equality, as the PMS dialect does.

    The records it starts with were created before the write was accepted, so a list with
    `created_after` leaves them out.
    """

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.created_before_acceptance = len(records)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST":
            record = {"id": f"residents-{len(self.records) + 1}", **json.loads(request.content)}
            self.records.append(record)
            return httpx.Response(201, json=record)
        filters = {
            k: v
            for k, v in request.url.params.items()
            if k not in {"page", "page_size", "created_after"}
        }
        start = self.created_before_acceptance if "created_after" in request.url.params else 0
        found = [
            r for r in self.records[start:] if all(str(r.get(k)) == v for k, v in filters.items())
        ]
        return httpx.Response(200, json={"results": found, "has_more": False})


# --- outcome known or unknown ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "unknown"),
    [
        (502, True),
        (500, True),
        (503, True),
        (httpx.RemoteProtocolError, True),
        (httpx.ReadError, True),
        (httpx.WriteError, True),
        (httpx.ReadTimeout, True),
        (httpx.WriteTimeout, True),
        (httpx.ConnectError, False),
        (httpx.ConnectTimeout, False),
        (httpx.PoolTimeout, False),
        (408, False),
    ],
)
@pytest.mark.parametrize("action", [CREATE, UPDATE])
def test_a_write_failing_after_it_was_sent_has_an_unknown_outcome(
    failure: int | type[httpx.TransportError], unknown: bool, action: str
) -> None:
    step = Step("residents", action, "residents-1", dict(PAYLOAD), idempotency_key="k")
    pms = connector(profile_for("SANDBOX"), failing_with(failure))

    with pytest.raises(PmsError) as raised:
        pms.execute(step, lambda exchange: None)

    assert raised.value.retryable is True
    assert raised.value.outcome_unknown is unknown


@pytest.mark.parametrize("action", [CREATE, UPDATE])
def test_a_write_answered_with_a_body_that_is_not_json_has_an_unknown_outcome(
    action: str,
) -> None:
    """Found in review: a 2xx the connector could not parse escaped as an internal error with
    the outcome known, so a keyless vendor's retry-write created the record again."""
    step = Step("residents", action, "residents-1", dict(PAYLOAD), idempotency_key="k")
    garbled = connector(
        profile_for("APPFOLIO"), lambda request: httpx.Response(201, text="<html>ok</html>")
    )

    with pytest.raises(PmsError) as raised:
        garbled.execute(step, lambda exchange: None)

    assert raised.value.retryable is True
    assert raised.value.outcome_unknown is True
    assert "not JSON" in raised.value.message


@pytest.mark.parametrize("failure", [502, httpx.RemoteProtocolError, httpx.ReadTimeout])
def test_a_failed_read_leaves_the_outcome_known(
    failure: int | type[httpx.TransportError],
) -> None:
    pms = connector(profile_for("SANDBOX"), failing_with(failure))

    with pytest.raises(PmsError) as raised:
        pms.list_page("residents", 1, 10, lambda exchange: None)

    assert raised.value.outcome_unknown is False


def test_a_429_or_a_4xx_leaves_the_outcome_known() -> None:
    throttled = connector(profile_for("SANDBOX"), failing_with(429))
    refused = connector(profile_for("SANDBOX"), failing_with(422))

    with pytest.raises(PmsThrottled) as raised_429:
        throttled.execute(create_step(), lambda exchange: None)
    with pytest.raises(PmsError) as raised_422:
        refused.execute(create_step(), lambda exchange: None)

    assert raised_429.value.outcome_unknown is False
    assert (raised_422.value.retryable, raised_422.value.outcome_unknown) == (False, False)


def test_a_broken_connection_is_logged_without_secrets() -> None:
    exchanges: list[Exchange] = []
    pms = connector(profile_for("SANDBOX"), failing_with(httpx.RemoteProtocolError))

    with pytest.raises(PmsError):
        pms.execute(create_step(), exchanges.append)

    (exchange,) = exchanges
    assert (exchange.error, exchange.response_status) == ("transport error: injected", None)
    assert "secret-key" not in json.dumps(exchange.request_headers)


# --- read-back by external reference ----------------------------------------------------------


def test_every_create_of_a_vendor_without_keys_carries_its_reference() -> None:
    appfolio = FakePms([])
    keyed = FakePms([])

    connector(profile_for("APPFOLIO"), appfolio).execute(create_step(), lambda e: None)
    connector(profile_for("SANDBOX"), keyed).execute(create_step(), lambda e: None)

    assert json.loads(appfolio.requests[0].content) == {**PAYLOAD, "external_id": "key-new"}
    assert "Idempotency-Key" not in appfolio.requests[0].headers
    assert json.loads(keyed.requests[0].content) == PAYLOAD
    assert keyed.requests[0].headers["Idempotency-Key"] == "key-new"


def test_an_unknown_outcome_finds_its_own_record_by_reference() -> None:
    pms = FakePms(
        [
            {"id": "residents-1", **PAYLOAD, "external_id": "key-old"},
            {"id": "residents-2", **PAYLOAD, "external_id": "key-new"},
        ]
    )

    result = connector(profile_for("APPFOLIO"), pms).execute(
        create_step(outcome_unknown=True), lambda e: None
    )

    assert result.created_record_id == "residents-2"
    assert [(r.method, dict(r.url.params)) for r in pms.requests] == [
        ("GET", {"external_id": "key-new", "page_size": "100"})
    ]


def test_a_write_equal_to_an_existing_record_creates_its_own() -> None:
    """The old read-back took any record with the payload's fields: it merged two writes."""
    pms = FakePms([{"id": "residents-1", **PAYLOAD, "external_id": "key-old"}])

    result = connector(profile_for("APPFOLIO"), pms).execute(
        create_step(outcome_unknown=True), lambda e: None
    )

    assert result.created_record_id == "residents-2"
    assert [r["external_id"] for r in pms.records] == ["key-old", "key-new"]


def test_a_pms_ignoring_the_reference_filter_is_not_believed() -> None:
    def ignores_filters(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            old = {"id": "residents-1", **PAYLOAD, "external_id": "key-old"}
            return httpx.Response(200, json={"results": [old], "has_more": False})
        return httpx.Response(201, json={"id": "residents-2", **json.loads(request.content)})

    result = connector(profile_for("APPFOLIO"), ignores_filters).execute(
        create_step(outcome_unknown=True), lambda e: None
    )

    assert result.created_record_id == "residents-2"


# --- read-back without a reference field ------------------------------------------------------


def test_without_a_reference_field_the_read_back_looks_only_after_acceptance() -> None:
    pms = FakePms([{"id": "residents-1", **PAYLOAD}])

    connector(profile_for("RESMAN"), pms).execute(create_step(outcome_unknown=True), lambda e: None)

    read_back, create = pms.requests
    assert dict(read_back.url.params) == {
        **PAYLOAD,
        "created_after": "2026-05-01T12:00:00+00:00",
        "page_size": "100",
    }
    assert json.loads(create.content) == PAYLOAD


def test_without_acceptance_time_nothing_is_claimed() -> None:
    pms = FakePms([{"id": "residents-1", **PAYLOAD}])
    step = Step("residents", CREATE, None, dict(PAYLOAD), idempotency_key="k", outcome_unknown=True)

    result = connector(profile_for("RESMAN"), pms).execute(step, lambda e: None)

    assert result.created_record_id == "residents-2"
    assert [r.method for r in pms.requests] == ["POST"]


def test_a_path_parsed_once_still_carries_each_request_s_own_query_and_body() -> None:
    """Jobs of one integration share the parsed URL of each path (`PathUrls`): what differs
    between their requests (a page's query, a create's body) is never shared with it."""
    pms = FakePms([])
    endpoint = VENDORS.get(profile_for("SANDBOX").vendor).endpoint(
        base_url=BASE_URL, credentials={"api_key": "secret-key-0123456789"}
    )
    client = httpx.Client(transport=httpx.MockTransport(pms))
    for page in (1, 2):
        endpoint.connector(client).list_page("residents", page, 10, lambda _: None)
    for name in ("Curie", "Meitner"):
        step = Step("residents", CREATE, None, {"last_name": name}, idempotency_key=name)
        endpoint.connector(client).execute(step, lambda _: None)

    assert [str(r.url) for r in pms.requests] == [
        f"{BASE_URL}/residents?page=1&page_size=10",
        f"{BASE_URL}/residents?page=2&page_size=10",
        f"{BASE_URL}/residents",
        f"{BASE_URL}/residents",
    ]
    assert [json.loads(r.content)["last_name"] for r in pms.requests[2:]] == ["Curie", "Meitner"]


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/json", b'{"name": "Curie"}'),
        ("application/json", '{"name": "Skłodowska"}'.encode()),
        ("application/json", b'{"name": "\xff broken"}'),
        (None, b"plain"),
        ("text/plain; charset=latin-1", "Gödel".encode("latin-1")),
        ("application/json;charset=utf-16", '{"a": 1}'.encode("utf-16")),
        ("application/json", b""),
    ],
)
def test_the_logged_body_is_the_text_httpx_decodes(
    content_type: str | None, content: bytes
) -> None:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    fresh = httpx.Response(200, headers=headers, content=content, default_encoding="utf-8")
    expected = httpx.Response(200, headers=headers, content=content).text
    assert body_text(fresh) == expected
