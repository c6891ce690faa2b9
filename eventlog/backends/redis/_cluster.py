"""Connecting the Redis backend to one server or to a Redis Cluster, and writes that wait
for replicas.

A cluster needs nothing else from the backend: a session's keys share the hash tag
``{<session id>}`` (one slot, so one node runs each script and each transaction), and the
session registry is one set, reached with single-key commands only; listing checks each
session's head with a pipeline that redis-py splits by node.

``replicas`` (``WAIT``): Redis replicates asynchronously, so a master that dies can take
its last writes with it even after it acknowledged them, and the replica promoted in its
place never saw them. An append (or a create) sent with ``replicas=N`` is acknowledged only
once N replicas hold it: the script and a ``WAIT N`` go down one connection (``WAIT``
counts the writes of its own connection), to the node that holds the session's slot. When
fewer replicas confirm in time, the write is sent again (it carries its token, so it lands
once, and the script then writes a no-op to the session so that the ``WAIT`` after it
covers the earlier write too), until ``retry_for`` runs out.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import REDIS_ALLOWED_KEYS, RedisCluster
from redis.commands.core import Script
from redis.retry import Retry

from ...core._errors import InvalidInputError

_WAIT_MS = 1000  # one WAIT's longest block; the backend's retry loop bounds the total


class NotReplicated(redis.TimeoutError):
    """Fewer replicas than asked confirmed a write in time: transient, sent again."""


def connect(url: str, *, cluster: bool, options: dict[str, Any]) -> tuple[redis.Redis, str]:
    """A client for ``url`` (a RedisCluster one when ``cluster``), and where it points."""
    # No retries inside redis-py: the backend's retry loop knows which writes it may send
    # again, and how to tell an append that landed from one that did not.
    options.setdefault("retry", Retry(NoBackoff(), 0))
    try:
        if cluster:
            # RedisCluster drops options it does not know, silently: refuse them here.
            known = set(REDIS_ALLOWED_KEYS) | set(inspect.signature(RedisCluster).parameters)
            unknown = sorted(set(options) - known)
            if unknown:
                raise InvalidInputError(f"unknown option for the Redis Cluster store: "
                                        f"{', '.join(unknown)}")
            client: Any = RedisCluster.from_url(url, **options)
        else:
            client = redis.Redis.from_url(url, **options)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"bad Redis URL or option: {exc}") from None
    except redis.RedisError as exc:  # RedisCluster asks a node for the slots at once
        raise InvalidInputError(f"can't reach the Redis Cluster at {url!r}: {exc}") from None
    return client, where(client)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def where(client: Any) -> str:
    if is_cluster(client):
        node = client.get_default_node()
        return f"Redis Cluster via {node.host}:{node.port}"
    kwargs = client.connection_pool.connection_kwargs
    return f"Redis at {kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}"


def node_client(client: Any, key: str) -> redis.Redis:
    """The plain client of the node that holds ``key`` (the client itself off a cluster)."""
    if is_cluster(client):
        return client.get_redis_connection(client.get_node_from_key(key))  # type: ignore[no-any-return]
    return client  # type: ignore[no-any-return]


def on_node(client: Any, key: str, transaction: bool,
            fill: Callable[[redis.client.Pipeline], None]) -> list[Any]:
    """Run the commands ``fill`` adds to a pipeline on one connection of the node holding
    ``key``. redis-py's cluster pipelines can't be used here: its transactions leave replies
    unparsed (an XRANGE comes back as nested lists), and a ``WAIT`` in one would be sent to
    another node than the write it waits for."""
    pipe = node_client(client, key).pipeline(transaction=transaction)
    fill(pipe)
    try:
        return pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.MovedError,
            redis.exceptions.AskError, redis.exceptions.ClusterDownError):
        # The node died or the slot moved (a failover, a resharding): learn the cluster's
        # map again (RedisCluster does this itself for the commands it routes), then the
        # backend's retry loop sends the commands again.
        _relearn(client)
        raise
    except redis.ResponseError as exc:
        if not str(exc).partition("UNBLOCKED")[1]:
            raise
        # A WAIT cut short because its master became a replica (a manual failover): the
        # write may or may not be on the new master, so it is sent again there.
        _relearn(client)
        raise NotReplicated(f"the node stopped being the master while waiting: {exc}") from exc


def _relearn(client: Any) -> None:
    if is_cluster(client):
        try:
            client.nodes_manager.initialize()
        except redis.RedisError:
            pass  # no node answers yet: the next try asks again


def replicated(client: Any, script: Script, keys: list[str], args: list[Any], replicas: int,
               written: Callable[[Any], bool]) -> Any:
    """Run ``script`` and ``WAIT replicas`` on one connection of the node holding ``keys``;
    its reply, once ``written(reply)`` is false or enough replicas hold the write."""
    def fill(pipe: redis.client.Pipeline) -> None:
        script(keys=keys, args=args, client=pipe)
        pipe.wait(replicas, _WAIT_MS)

    reply, acked = on_node(client, keys[0], False, fill)
    if written(reply) and int(acked) < replicas:
        raise NotReplicated(f"written on the master, but {int(acked)} of the {replicas} "
                            f"replica(s) asked for confirmed it within {_WAIT_MS} ms")
    return reply
