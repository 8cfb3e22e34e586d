"""`CeleryPublisher` on a real redis-server, with pmsq's broker transport: the bytes it leaves
on the queue's list, and what a forked process publishes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import redis
from celery import Celery
from kombu.messaging import Producer

from pmsq.redis_client import broker_transport_options
from pmsq.settings import Settings
from pmsq.tracing import headers_to_send
from pmsq.workers.broker import broker_transport
from pmsq.workers.publisher import RUN_JOB_TASK, AdmittedJob, CeleryPublisher

QUEUE = "pmsq.test-jobs"


@pytest.fixture
def app(redis_url: str) -> Iterator[Celery]:
    """An app configured as pmsq's (`pmsq.workers.app`), on the test's redis-server."""
    app = Celery("publisher-broker-test", set_as_current=False)
    app.conf.update(
        broker_url=redis_url,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_transport=broker_transport(redis_url),
        broker_transport_options=broker_transport_options(Settings(redis_url=redis_url)),
    )
    yield app
    app.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def taken(client: redis.Redis) -> list[str]:
    """The raw messages on the queue's list, oldest first (the order workers take them)."""
    messages = []
    while (raw := client.rpop(QUEUE)) is not None:
        messages.append(raw.decode())
    return messages


def own_values_replaced(raw: str) -> str:
    """The raw message with the values it has of its own (task id, delivery tag) replaced."""
    message = json.loads(raw)
    return raw.replace(message["headers"]["id"], "<task id>").replace(
        message["properties"]["delivery_tag"], "<delivery tag>"
    )


def test_the_bytes_on_the_queue_are_those_send_task_leaves(
    app: Celery, client: redis.Redis
) -> None:
    """Byte for byte (but the task id and delivery tag), key order included."""
    publisher = CeleryPublisher(app, QUEUE)
    job = AdmittedJob("j1", "i1", "residents", "CREATE", "j1")
    args, kwargs = [job.job_id], {"integration_id": "i1", "step": "residents.CREATE"}

    publisher.publish(job)
    app.send_task(
        RUN_JOB_TASK,
        args=args,
        kwargs=kwargs,
        queue=QUEUE,
        headers=headers_to_send(),
        argsrepr=repr(args),
        kwargsrepr=repr(kwargs),
        ignore_result=True,
    )

    ours, celerys = taken(client)
    assert own_values_replaced(ours) == own_values_replaced(celerys)
    message = json.loads(ours)
    assert message["headers"]["task"] == RUN_JOB_TASK
    assert message["headers"]["argsrepr"] == "['j1']"


def test_a_forked_child_publishes_on_its_own_connection_as_its_own_origin(
    app: Celery, client: redis.Redis
) -> None:
    """A child must not write to its parent's broker connection, and its messages name it
    (`origin`), not the parent, as the process that sent them."""
    publisher = CeleryPublisher(app, QUEUE)
    used: list[Producer] = []
    publish = Producer.publish

    def recording(producer: Producer, body: Any, **options: Any) -> Any:
        used.append(producer)
        return publish(producer, body, **options)

    with mock.patch.object(Producer, "publish", recording):
        publisher.publish(AdmittedJob("j1", "i1", "residents", "CREATE"))
        [parents] = used
        child = os.fork()
        if child == 0:  # pragma: no cover (the child's outcome is its exit status)
            status = 1
            try:
                publisher.publish(AdmittedJob("j2", "i1", "residents", "CREATE"))
                status = 0 if used[-1] is not parents else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        publisher.publish(AdmittedJob("j3", "i1", "residents", "CREATE"))

    assert used == [parents, parents], "the parent goes on with its own connection"
    origins = [json.loads(raw)["headers"]["origin"] for raw in taken(client)]
    assert [origin.split("@")[0] for origin in origins] == [
        f"gen{os.getpid()}",
        f"gen{child}",
        f"gen{os.getpid()}",
    ]
