"""The two Redis clients towerpy drives, behind the three things a limiter needs from them.

A limiter runs Lua scripts (EVALSHA, loading the script again when the server answers
NOSCRIPT: after a restart or a ``SCRIPT FLUSH``), listens on one pub/sub channel, and knows which
of the client's errors mean "Redis cannot be reached" rather than "the request was wrong".

- ``redis.asyncio`` (redis-py >= 5, the ``redis`` extra): asyncio only. On trio it fails with a
  bare "no running event loop", so a limiter refuses it there with a message saying what to do.
- ``coredis`` >= 6 (the ``coredis`` extra): built on anyio, so it runs on asyncio and trio.

Neither is imported until a limiter is given one of its clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Protocol, final

import anyio

from .. import _backend

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Connection", "connect", "text"]

_REDIS_EXTRA = "pip install 'towerpy[redis]'"
_COREDIS_EXTRA = "pip install 'towerpy[coredis]'"


def text(value: object) -> str:
    """Returns a reply item as a str, whether the client decodes responses or not."""
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


class Connection(Protocol):
    """What a limiter needs from a Redis client."""

    unavailable: tuple[type[BaseException], ...]
    """The client's errors that mean Redis could not be reached (or not in time)."""

    exhausted: tuple[type[BaseException], ...]
    """Subclasses of those that are this process's own doing (a full connection pool)."""

    address: str
    """Where the client connects, for messages."""

    def check_backend(self, who: str) -> None:
        """Raises a clear error when the running event loop cannot drive this client."""
        ...

    async def run(self, script: str, keys: Sequence[str], args: Sequence[str]) -> list[Any]:
        """Runs ``script`` with EVALSHA, loading it first if the server does not know it."""
        ...

    async def ping(self) -> None:
        """Sends PING (opening a connection of the pool, if it has none)."""
        ...

    async def listen(
        self, channel: str, on_ready: Callable[[], None], on_message: Callable[[str], None]
    ) -> None:
        """Subscribes to ``channel`` and hands every message to ``on_message``, until cancelled.

        Raises one of `unavailable` when the connection is lost.
        """
        ...


def _version(module: Any) -> tuple[int, ...]:
    parts = []
    for part in str(getattr(module, "__version__", "0")).split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _import(name: str, at_least: int, extra: str, who: str) -> Any:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - the client given was made with it
        raise ImportError(
            f"{who} needs the {name!r} package, which is not installed; run: {extra}"
        ) from exc
    if _version(module) < (at_least,):
        raise ImportError(
            f"{who} needs {name}>={at_least}, found {getattr(module, '__version__', '?')}; "
            f"run: {extra}"
        )
    return module


def _address(pool: Any) -> str:
    location = getattr(pool, "location", None)  # coredis
    if location is not None:
        return str(location)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    host, port = kwargs.get("host"), kwargs.get("port")
    return f"{host}:{port}" if host is not None else "the configured server"


@final
class _RedisPy:
    __slots__ = ("_client", "_scripts", "address", "exhausted", "unavailable")

    def __init__(self, client: Any, who: str) -> None:
        redis = _import("redis", 5, _REDIS_EXTRA, who)
        errors = redis.exceptions
        self._client = client
        self._scripts: dict[str, Any] = {}
        self.address = _address(getattr(client, "connection_pool", None))
        self.unavailable: tuple[type[BaseException], ...] = (
            errors.ConnectionError,  # BusyLoadingError (a restart reading its data) included
            errors.TimeoutError,
            errors.ReadOnlyError,  # a replica promoted during failover, not yet writable
            errors.ClusterDownError,
            errors.TryAgainError,
            OSError,
        )
        # a pool of max_connections, all in use: Redis is fine, the pool is too small
        exhausted = getattr(errors, "MaxConnectionsError", None)
        self.exhausted: tuple[type[BaseException], ...] = () if exhausted is None else (exhausted,)

    def check_backend(self, who: str) -> None:
        if _backend.current().NAME != "asyncio":
            raise TypeError(
                f"{who} was given a redis.asyncio client, which runs on asyncio only; on trio "
                f"pass a coredis client instead (coredis>=6 runs on trio): {_COREDIS_EXTRA}"
            )

    async def run(self, script: str, keys: Sequence[str], args: Sequence[str]) -> list[Any]:
        registered = self._scripts.get(script)
        if registered is None:  # redis-py's script object reloads it on NOSCRIPT
            registered = self._scripts[script] = self._client.register_script(script)
        reply: list[Any] = await registered(keys=keys, args=args)
        return reply

    async def ping(self) -> None:
        await self._client.ping()

    async def listen(
        self, channel: str, on_ready: Callable[[], None], on_message: Callable[[str], None]
    ) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            on_ready()
            while True:
                # a bounded read: redis-py versions disagree on what an unbounded one does
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    on_message(text(message["data"]))
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                close = getattr(pubsub, "aclose", None) or pubsub.reset
                await close()


@final
class _Coredis:
    __slots__ = ("_client", "_scripts", "address", "exhausted", "unavailable")

    def __init__(self, client: Any, who: str) -> None:
        coredis = _import("coredis", 6, _COREDIS_EXTRA, who)
        errors = coredis.exceptions
        self._client = client
        self._scripts: dict[str, Any] = {}
        self.address = _address(getattr(client, "connection_pool", None))
        self.unavailable: tuple[type[BaseException], ...] = (
            errors.ConnectionError,
            errors.ReadOnlyError,
            errors.ClusterDownError,
            errors.TryAgainError,
            TimeoutError,
            OSError,
        )
        self.exhausted: tuple[type[BaseException], ...] = ()

    def check_backend(self, who: str) -> None:
        return None  # coredis runs on whichever backend anyio runs

    async def run(self, script: str, keys: Sequence[str], args: Sequence[str]) -> list[Any]:
        registered = self._scripts.get(script)
        if registered is None:  # coredis's script object reloads it on NOSCRIPT
            registered = self._scripts[script] = self._client.register_script(script)
        reply: list[Any] = await registered(keys, args)
        return reply

    async def ping(self) -> None:
        await self._client.ping()

    async def listen(
        self, channel: str, on_ready: Callable[[], None], on_message: Callable[[str], None]
    ) -> None:
        async with self._client.pubsub(
            channels=[channel], ignore_subscribe_messages=True
        ) as pubsub:
            on_ready()
            async for message in pubsub:
                if message.get("type") == "message":
                    on_message(text(message["data"]))


def connect(client: object, who: str) -> Connection:
    """Wraps a user's client.

    Raises:
        TypeError: ``client`` is not a client towerpy can drive (or a synchronous one).
        ImportError: The client's library is older than towerpy supports.
    """
    module = type(client).__module__
    if module.startswith("redis.asyncio"):
        return _RedisPy(client, who)
    if module == "redis" or module.startswith("redis."):
        raise TypeError(
            f"{who} needs an asyncio client: redis.asyncio.Redis (or a coredis client), not "
            f"the synchronous {module}.{type(client).__name__}"
        )
    if module == "coredis" or module.startswith("coredis."):
        return _Coredis(client, who)
    raise TypeError(
        f"{who} needs a Redis client: a redis.asyncio.Redis ({_REDIS_EXTRA}) or, on trio too, "
        f"a coredis>=6 client ({_COREDIS_EXTRA}); got {type(client).__name__}"
    )
