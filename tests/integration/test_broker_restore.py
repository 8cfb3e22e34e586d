"""The broker connection pmsq's workers make survives being closed after it dropped while a
late-acked message was unacknowledged.

A Celery worker whose broker connection drops collects the connection (kombu closes its
channels and detaches the transport) and then closes it again; the second close finds the
channel still open, restores its unacknowledged message, and needs the detached transport's
address for that. With kombu's ack emulation that raises AttributeError out of the worker's
consumer ("Unrecoverable error": the worker exits, as seen when a Sentinel master died); with
the transport options pmsq gives Celery, the restore's failure is logged and the worker goes
on to reconnect. Here the drop is the transport detached under an open channel, on a real
redis-server.
"""

from __future__ import annotations

import redis
from kombu import Connection, Exchange, Message, Queue
from support.services import RedisServer

from pmsq.redis_client import broker_transport_options
from pmsq.settings import Settings


def test_closing_a_detached_channel_with_an_unacked_message_does_not_raise(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/7"
    options = broker_transport_options(Settings(redis_url=url))
    connection = Connection(url, transport_options=options)
    queue = Queue("restore-test", Exchange("restore-test", type="direct"), "restore-test")
    received: list[Message] = []
    try:
        with connection.Producer() as producer:
            producer.publish({"job": 1}, exchange=queue.exchange, routing_key="restore-test",
                             declare=[queue])  # fmt: skip
        consumer = connection.Consumer(queue, callbacks=[lambda _, m: received.append(m)])
        consumer.consume()
        connection.drain_events(timeout=5)
        assert len(received) == 1 and not received[0].acknowledged
        channel = connection.default_channel
        # What `Connection.collect()` leaves behind when the channel's close was cut short by
        # the dropped connection: the transport detached, the channel still open.
        channel._disconnect_pools()
        channel.connection.client = None

        channel.close()

        assert channel.closed
    finally:
        connection.release()
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()
