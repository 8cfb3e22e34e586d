"""`CeleryPublisher` against a real Celery app on kombu's in-memory broker: what a worker and
Flower receive of each message, and how each was published."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from celery import Celery
from celery.utils.saferepr import saferepr
from kombu.messaging import Producer

from pmsq.workers.publisher import RUN_JOB_TASK, AdmittedJob, CeleryPublisher

QUEUE = "pmsq.test-jobs"


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("publisher-test", broker="memory://", set_as_current=False)
    app.conf.update(task_default_queue=QUEUE, task_ignore_result=True)
    yield app
    app.close()


def test_each_job_reaches_the_queue_as_celery_would_show_it(app: Celery) -> None:
    publisher = CeleryPublisher(app, QUEUE)
    jobs = [AdmittedJob(f"j{n}", "i1", "residents", "CREATE", "j0") for n in range(3)]
    sent: list[dict[str, Any]] = []
    publish = Producer.publish

    def recording(producer: Producer, body: Any, **options: Any) -> Any:
        sent.append(options)
        return publish(producer, body, **options)

    with mock.patch.object(Producer, "publish", recording):
        for job in jobs:
            publisher.publish(job)

    received = []
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(QUEUE, no_ack=True)) is not None:
            received.append(message)
    assert [message.headers["task"] for message in received] == [RUN_JOB_TASK] * 3
    for job, message in zip(jobs, received, strict=True):
        args, kwargs, _ = message.decode()
        assert args == [job.job_id]
        assert kwargs == {"integration_id": "i1", "step": "residents.CREATE"}
        # The text Flower and `celery inspect` show: what Celery's own saferepr makes of them.
        assert message.headers["argsrepr"] == saferepr(args)
        assert message.headers["kwargsrepr"] == saferepr(kwargs)
    # Every message under Celery's publish retry policy; the queue declared by the first.
    policy = dict(app.conf.task_publish_retry_policy)
    assert [(options["retry"], options["retry_policy"]) for options in sent] == [(True, policy)] * 3
    assert [[queue.name for queue in options["declare"]] for options in sent] == [[QUEUE], [], []]


def received_task_ids(app: Celery) -> list[str]:
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        ids = []
        while (message := channel.basic_get(QUEUE, no_ack=True)) is not None:
            ids.append(message.headers["id"])
        return ids


def test_one_producer_serves_message_after_message(app: Celery) -> None:
    """Celery's producer pool would hand its producer out and bind it to a channel again for
    every message (three times here); the publisher's own producer is bound once."""
    publisher = CeleryPublisher(app, QUEUE)
    revived: list[Producer] = []
    revive = Producer.revive

    def counting(producer: Producer, channel: Any) -> Any:
        revived.append(producer)
        return revive(producer, channel)

    with mock.patch.object(Producer, "revive", counting):
        for n in range(3):
            publisher.publish(AdmittedJob(f"j{n}", "i1", "residents", "CREATE"))

    assert len(revived) == 1
    assert len(received_task_ids(app)) == 3


def test_a_producer_whose_publish_failed_is_closed_and_not_used_again(app: Celery) -> None:
    publisher = CeleryPublisher(app, QUEUE)
    used: list[Producer] = []
    publish = Producer.publish

    def failing_once(producer: Producer, body: Any, **options: Any) -> Any:
        used.append(producer)
        if len(used) == 1:
            raise OSError("broker gone")
        return publish(producer, body, **options)

    with mock.patch.object(Producer, "publish", failing_once):
        with pytest.raises(OSError):
            publisher.publish(AdmittedJob("j0", "i1", "residents", "CREATE"))
        publisher.publish(AdmittedJob("j1", "i1", "residents", "CREATE"))

    failed, fresh = used
    assert fresh is not failed
    assert failed.connection._closed
    assert len(received_task_ids(app)) == 1


def test_threads_publishing_at_once_never_share_a_producer(app: Celery) -> None:
    """The API admits on several threads through one publisher: a producer (its channel) is
    one thread's at a time."""
    publisher = CeleryPublisher(app, QUEUE)
    publisher.publish(AdmittedJob("j0", "i1", "residents", "CREATE"))  # one idle producer
    inside, leave = threading.Event(), threading.Event()
    used: dict[str, Producer] = {}
    publish = Producer.publish

    def holding_the_first(producer: Producer, body: Any, **options: Any) -> Any:
        job_id = options["headers"]["argsrepr"]
        used[job_id] = producer
        if "j1" in job_id:
            inside.set()
            assert leave.wait(10)
        return publish(producer, body, **options)

    with mock.patch.object(Producer, "publish", holding_the_first):
        first = threading.Thread(
            target=publisher.publish, args=(AdmittedJob("j1", "i1", "residents", "CREATE"),)
        )
        first.start()
        assert inside.wait(10)
        publisher.publish(AdmittedJob("j2", "i1", "residents", "CREATE"))
        leave.set()
        first.join(10)
        # Both producers are idle again: the next two messages in a row use one of them.
        publisher.publish(AdmittedJob("j3", "i1", "residents", "CREATE"))

    assert used["['j1']"] is not used["['j2']"]
    assert used["['j3']"] in (used["['j1']"], used["['j2']"])
    assert len(received_task_ids(app)) == 4
