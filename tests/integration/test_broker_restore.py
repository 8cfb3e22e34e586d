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
from pmsq.workers.broker import TRANSPORT, broker_transport


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


def test_a_broker_channel_sends_through_one_client_per_connection_pool(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/8"
    assert broker_transport(url) == TRANSPORT
    connection = Connection(
        url, transport=broker_transport(url), transport_options=broker_transport_options(Settings())
    )
    try:
        channel = connection.default_channel
        with connection.Producer() as producer:
            for n in range(3):
                producer.publish({"job": n}, routing_key="one-client-test")
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert second is first
            assert first.llen("one-client-test") == 3
        # What kombu does when the connection drops: the pool goes, and its client with it.
        channel._disconnect_pools()
        with channel.conn_or_acquire() as third:
            assert third is not first
            assert third.connection_pool is channel.pool
            assert third.llen("one-client-test") == 3
    finally:
        connection.release()
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


def test_only_a_plain_redis_broker_gets_pmsqs_transport() -> None:
    assert broker_transport("redis://127.0.0.1:6379/0") == TRANSPORT
    assert broker_transport("rediss://127.0.0.1:6380/0") is None
    assert broker_transport("sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380") is None
