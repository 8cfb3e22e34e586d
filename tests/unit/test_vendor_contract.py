"""The contract every vendor keeps, whatever its dialect: run on each registered vendor and on
the example package under examples/, registered as pip would through its entry point.

Driven through `httpx.MockTransport`: the handler plays a PMS that fails in every way the
runner must tell apart. The contract: every request is paced and carries the credentials;
outcomes are known or unknown exactly as `pmsq.pms.http` maps them; no credential value reaches
a captured exchange or an error; the credentials model refuses bad input naming the field,
without repeating it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import httpx
import pytest

from pmsq.errors import PmsError, PmsqError, PmsThrottled, ValidationFailed
from pmsq.models.enums import Vendor
from pmsq.pms.connector import Exchange, Step
from pmsq.pms.http_connector import HttpConnector
from pmsq.pms.profiles import CREATE, FIELD_TYPES, UPDATE
from pmsq.pms.registry import ENTRY_POINT_GROUP, VENDORS, Registry, load_entry_point
from pmsq.pms.vendor import VendorSpec
from pmsq.pms.vendors import sandbox

BASE_URL = "http://pms.test/t/acme"
EXAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "examples" / "pmsq-vendor-example"
#: The example vendor's parameter id: it is not in `VENDORS` but in its own package.
EXAMPLE = "EXAMPLE-package"

Handler = Callable[[httpx.Request], httpx.Response]


# --- the vendors under contract ---------------------------------------------------------------


@pytest.fixture(scope="module")
def example_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The registry as it is once the example package is installed next to pmsq.

    What `pip install examples/pmsq-vendor-example` leaves behind, without pip: the package's
    code and a `*.dist-info` whose `entry_points.txt` holds the entry points its pyproject.toml
    declares, in a directory put on sys.path.
    """
    project = tomllib.loads((EXAMPLE_PROJECT / "pyproject.toml").read_text())["project"]
    site = tmp_path_factory.mktemp("site-packages")
    shutil.copytree(EXAMPLE_PROJECT / "src" / "pmsq_vendor_example", site / "pmsq_vendor_example")
    dist_info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines: list[str] = []
    for group, entry_points in project["entry-points"].items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        yield Registry.discover()
    sys.modules.pop("pmsq_vendor_example", None)


@pytest.fixture(params=[*VENDORS.names(), EXAMPLE])
def vendor(request: pytest.FixtureRequest) -> VendorSpec[Any]:
    if request.param == EXAMPLE:
        registry: Registry = request.getfixturevalue("example_registry")
        return registry.get("EXAMPLE")
    return VENDORS.get(request.param)


def credentials_of(vendor: VendorSpec[Any]) -> dict[str, Any]:
    """The credentials model's documented example, each string made a unique fake secret."""
    examples = vendor.credentials.model_json_schema().get("examples")
    assert examples, f"{vendor.name}'s credentials model documents no example"
    tag = uuid.uuid4().hex[:12]
    return {k: f"{v}-{tag}" if isinstance(v, str) else v for k, v in examples[0].items()}


def secrets_of(credentials: dict[str, Any]) -> list[str]:
    return [value for value in credentials.values() if isinstance(value, str)]


def sample_payload(vendor: VendorSpec[Any], model: str) -> dict[str, Any]:
    fields = sorted(vendor.profile.models[model].fields)[:3]
    return {name: FIELD_TYPES.get(name, (str,))[0](7) for name in fields}


def writes_of(vendor: VendorSpec[Any]) -> list[Step]:
    """One create and one update, on the first models that take them."""
    steps: list[Step] = []
    for action in (CREATE, UPDATE):
        model = next(
            (m for m, s in sorted(vendor.profile.models.items()) if action in s.actions), ""
        )
        assert model, f"{vendor.name} has no model taking {action}: the contract needs one"
        target = "pms-record-1" if action == UPDATE else None
        steps.append(
            Step(
                model,
                action,
                target,
                sample_payload(vendor, model),
                idempotency_key=f"key-{action}",
                accepted_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC),
            )
        )
    return steps


class Pms:
    """The mock PMS: answers with `handler`, remembering the requests and when they left."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.events: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.events.append("send")
        return self.handler(request)

    def connector(self, vendor: VendorSpec[Any], credentials: dict[str, Any]) -> HttpConnector:
        return vendor.connector(
            base_url=BASE_URL,
            credentials=credentials,
            client=httpx.Client(transport=httpx.MockTransport(self)),
            before_request=lambda: self.events.append("pace"),
        )


def failing_with(failure: int | type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(failure, int):
            return httpx.Response(failure, json={"error": "injected"}, headers={"Retry-After": "7"})
        raise failure("injected", request=request)

    return handler


def record_reads_answer(handler: Handler) -> Handler:
    """`handler` for every request but the read of one record a dialect may send before an
    update (`Dialect.current_call`, a GET without a query), which finds the record: the
    update's own request then meets the failure, as a list's does."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and not request.url.query:
            return httpx.Response(200, json={"id": "pms-record-1", "Id": 1})
        return handler(request)

    return answer


def carries(request: httpx.Request, secrets: list[str]) -> bool:
    """A credential value is in one of the request's headers (where every dialect puts auth)."""
    return any(secret in value for value in request.headers.values() for secret in secrets)


# --- requests are paced and authenticated -----------------------------------------------------


def test_every_request_is_paced_first_and_carries_the_credentials(vendor: VendorSpec[Any]) -> None:
    credentials = credentials_of(vendor)
    pms = Pms(failing_with(503))
    connector = pms.connector(vendor, credentials)
    writes = writes_of(vendor)

    for step in writes:
        with pytest.raises(PmsError):
            connector.execute(step, lambda exchange: None)
    with pytest.raises(PmsError):
        connector.list_page(writes[0].model, 1, 10, lambda exchange: None)

    assert [r.method for r in pms.requests][-1] == "GET"
    assert len(pms.requests) == len(writes) + 1
    assert pms.events == ["pace", "send"] * len(pms.requests)
    unauthenticated = [str(r.url) for r in pms.requests if not carries(r, secrets_of(credentials))]
    assert unauthenticated == []


def test_a_pacing_refusal_sends_nothing(vendor: VendorSpec[Any]) -> None:
    class Refused(PmsqError):
        pass

    def refuse() -> None:
        raise Refused("no slot")

    pms = Pms(failing_with(201))
    connector = vendor.connector(
        base_url=BASE_URL,
        credentials=credentials_of(vendor),
        client=httpx.Client(transport=httpx.MockTransport(pms)),
        before_request=refuse,
    )

    with pytest.raises(Refused):
        connector.execute(writes_of(vendor)[0], lambda exchange: None)
    assert pms.requests == []


# --- outcome known or unknown -----------------------------------------------------------------

#: (failure, retryable, outcome unknown for a write); a read's outcome is always known.
FAILURES: list[tuple[int | type[httpx.TransportError], bool, bool]] = [
    (500, True, True),
    (502, True, True),
    (503, True, True),
    (504, True, True),
    (408, True, False),
    (400, False, False),
    (404, False, False),
    (422, False, False),
    (httpx.RemoteProtocolError, True, True),
    (httpx.ReadError, True, True),
    (httpx.WriteError, True, True),
    (httpx.ReadTimeout, True, True),
    (httpx.WriteTimeout, True, True),
    (httpx.ConnectError, True, False),
    (httpx.ConnectTimeout, True, False),
    (httpx.PoolTimeout, True, False),
]


@pytest.mark.parametrize(
    ("failure", "retryable", "unknown"),
    FAILURES,
    ids=[f if isinstance(f, int) else f.__name__ for f, _, _ in FAILURES],
)
def test_failures_are_mapped_the_same_for_every_vendor(
    vendor: VendorSpec[Any],
    failure: int | type[httpx.TransportError],
    retryable: bool,
    unknown: bool,
) -> None:
    connector = Pms(record_reads_answer(failing_with(failure))).connector(
        vendor, credentials_of(vendor)
    )
    writes = writes_of(vendor)

    outcomes: list[tuple[str, bool, bool]] = []
    for step in writes:
        with pytest.raises(PmsError) as raised:
            connector.execute(step, lambda exchange: None)
        assert not isinstance(raised.value, PmsThrottled)
        outcomes.append((step.action, raised.value.retryable, raised.value.outcome_unknown))
    with pytest.raises(PmsError) as read:
        connector.list_page(writes[0].model, 1, 10, lambda exchange: None)
    outcomes.append(("list", read.value.retryable, read.value.outcome_unknown))

    assert outcomes == [
        (CREATE, retryable, unknown),
        (UPDATE, retryable, unknown),
        ("list", retryable, False),
    ]


def test_a_429_throttles_with_its_retry_after_and_leaves_the_outcome_known(
    vendor: VendorSpec[Any],
) -> None:
    connector = Pms(failing_with(429)).connector(vendor, credentials_of(vendor))

    errors: list[PmsError] = []
    for step in writes_of(vendor):
        with pytest.raises(PmsThrottled) as raised:
            connector.execute(step, lambda exchange: None)
        errors.append(raised.value)
    with pytest.raises(PmsThrottled) as read:
        connector.list_page(writes_of(vendor)[0].model, 1, 10, lambda exchange: None)
    errors.append(read.value)

    assert [(e.retry_after_s, e.outcome_unknown, e.status_code) for e in errors] == [
        (7.0, False, 429)
    ] * 3


def test_an_unreadable_answer_to_a_write_leaves_its_outcome_unknown(
    vendor: VendorSpec[Any],
) -> None:
    garbled = Pms(
        record_reads_answer(lambda request: httpx.Response(200, text="<html>done</html>"))
    )
    connector = garbled.connector(vendor, credentials_of(vendor))

    for step in writes_of(vendor):
        with pytest.raises(PmsError) as raised:
            connector.execute(step, lambda exchange: None)
        assert (raised.value.retryable, raised.value.outcome_unknown) == (True, True), step


# --- secrets stay out of what is kept ---------------------------------------------------------


def test_credentials_echoed_by_the_pms_are_redacted_everywhere(vendor: VendorSpec[Any]) -> None:
    credentials = credentials_of(vendor)
    secrets = secrets_of(credentials)
    echoed = " ".join(secrets)

    def echoing(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            raise httpx.ReadError(f"connection reset while sending {echoed}", request=request)
        body = {
            "error": f"bad key {echoed}",
            "errors": [{"message": f"bad key {echoed}"}],
            "headers": dict(request.headers),
        }
        return httpx.Response(422, json=body, headers={"X-Echo": echoed})

    exchanges: list[Exchange] = []
    errors: list[str] = []
    connector = Pms(record_reads_answer(echoing)).connector(vendor, credentials)
    for step in writes_of(vendor):
        with pytest.raises(PmsError) as raised:
            connector.execute(step, exchanges.append)
        errors.append(raised.value.message)
    with pytest.raises(PmsError) as read:
        connector.list_page(writes_of(vendor)[0].model, 1, 10, exchanges.append)
    errors.append(read.value.message)

    writes = [e for e in exchanges if e.method != "GET"]
    assert len(writes) == 2 and all(e.response_status == 422 for e in writes)
    assert exchanges[-1].method == "GET" and exchanges[-1].error
    assert any("bad key" in error for error in errors)  # the PMS's own text is kept
    kept = json.dumps([dataclasses.asdict(e) for e in exchanges]) + json.dumps(errors)
    assert [secret for secret in secrets if secret in kept] == []


# --- credentials models -----------------------------------------------------------------------


def test_the_documented_credentials_example_is_accepted(vendor: VendorSpec[Any]) -> None:
    credentials = credentials_of(vendor)

    model = vendor.check_credentials(credentials)

    assert isinstance(model, vendor.credentials)
    assert [secret for secret in secrets_of(credentials) if secret in repr(model)] == []


def test_a_missing_credential_is_refused_naming_it(vendor: VendorSpec[Any]) -> None:
    credentials = credentials_of(vendor)
    required: list[str] = []
    for name in credentials:
        try:
            vendor.check_credentials({k: v for k, v in credentials.items() if k != name})
        except ValidationFailed as error:
            assert f"credentials.{name}" in {d["field"] for d in error.details}, error.details
            required.append(name)

    assert required, "a credentials model with nothing required accepts {}"
    with pytest.raises(ValidationFailed):
        vendor.check_credentials({})


def test_a_credential_of_the_wrong_type_is_refused_naming_it_without_echoing_it(
    vendor: VendorSpec[Any],
) -> None:
    credentials = credentials_of(vendor)
    for name, value in credentials.items():
        with pytest.raises(ValidationFailed) as raised:
            vendor.check_credentials({**credentials, name: [value]})
        assert f"credentials.{name}" in {d["field"] for d in raised.value.details}
        said = raised.value.message + json.dumps(raised.value.details)
        assert str(value) not in said


def test_stored_credentials_that_do_not_fit_fail_the_job_finally_sending_nothing(
    vendor: VendorSpec[Any],
) -> None:
    credentials = credentials_of(vendor)
    name = next(iter(credentials))
    pms = Pms(failing_with(201))

    with pytest.raises(PmsError) as raised:
        pms.connector(vendor, {**credentials, name: [credentials[name]]})

    assert raised.value.retryable is False
    assert f"credentials.{name}" in raised.value.message
    assert [s for s in secrets_of(credentials) if s in raised.value.message] == []
    assert pms.requests == []


# --- the registry -----------------------------------------------------------------------------


def test_every_built_in_vendor_is_registered_under_its_stored_name() -> None:
    built_in = [vendor.value for vendor in Vendor]
    assert VENDORS.names()[: len(built_in)] == built_in  # then any installed packages' vendors
    assert all(VENDORS.get(name).profile.vendor == name for name in VENDORS.names())
    assert "EXAMPLE" not in VENDORS  # only its package, once installed, adds it


def test_the_example_package_is_found_through_its_entry_point(example_registry: Registry) -> None:
    example = example_registry.get("EXAMPLE")

    assert example_registry.names() == [*VENDORS.names(), "EXAMPLE"]
    assert example.dialect.__module__ == "pmsq_vendor_example"
    assert "residents" in example_registry.known_models()
    assert "EXAMPLE" in example_registry.capabilities()


@pytest.mark.parametrize(
    ("value", "refusal"),
    [
        ("pmsq.pms.vendors.sandbox:VENDOR", "names vendor 'SANDBOX'"),
        ("pmsq.pms.vendors.sandbox:PROFILE", "not a VendorSpec"),
        ("pmsq_no_such_package:VENDOR", "cannot be loaded: ModuleNotFoundError"),
    ],
)
def test_a_broken_entry_point_is_refused_naming_it(value: str, refusal: str) -> None:
    entry_point = EntryPoint(name="ACME", value=value, group=ENTRY_POINT_GROUP)

    with pytest.raises(PmsqError, match=refusal) as raised:
        load_entry_point(entry_point)

    assert f"'ACME = {value}'" in raised.value.message


def test_a_package_cannot_replace_a_built_in_vendor_or_use_a_bad_name() -> None:
    with pytest.raises(PmsqError, match="registered twice"):
        Registry([*VENDORS, sandbox.VENDOR])
    lower = dataclasses.replace(
        sandbox.VENDOR, profile=dataclasses.replace(sandbox.PROFILE, vendor="acme")
    )
    with pytest.raises(PmsqError, match="upper-case"):
        Registry([lower])
