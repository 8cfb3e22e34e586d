"""`CeleryPublisher` against a real Celery app on kombu's in-memory broker: what a worker and
Flower receive of each message, and how each was published."""

from __future__ import annotations

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
