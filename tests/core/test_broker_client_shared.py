"""The broker's channel sends its commands through one Redis client made once, and still delivers: tasks'
messages published, received, acknowledged and redelivered through a real Redis."""
from kombu import Connection

from imserver import celery  # noqa: F401 - installs the broker's transports
from imserver.patches import SharedClientRedisTransport


def counted_clients(channel) -> list:
    """The redis-py clients the channel makes over its pool for commands outside its event loop, from now on."""
    made, real = [], channel.Client

    def client(**kwargs):
        made_client = real(**kwargs)
        if kwargs.get("connection_pool") is channel.pool:
            made.append(made_client)
        return made_client

    channel.Client = client
    return made


def test_a_channel_makes_one_client_for_all_its_commands_and_delivers_every_message(start_redis):
    redis = start_redis()
    with Connection(redis.url) as connection:
        assert isinstance(connection.transport, SharedClientRedisTransport)
        channel = connection.default_channel
        made = counted_clients(channel)
        queue = connection.SimpleQueue("shared-client", channel=channel)
        for n in range(10):
            queue.put({"n": n})
        received = []
        for _ in range(10):
            message = queue.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        queue.put({"n": "again"})
        unacked = queue.get(timeout=5)
        unacked.requeue()  # as a task left unacknowledged by a worker that died
        redelivered = queue.get(timeout=5)
        redelivered.ack()
        queue.close()

    assert received == list(range(10))
    assert redelivered.payload == {"n": "again"}
    assert len(made) == 1, f"{len(made)} clients made for 12 messages"
