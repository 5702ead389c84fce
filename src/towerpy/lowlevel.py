"""What a layer needs to honour ``ready()`` and ``call()``: reservations, and their hand-over.

Most layers need none of this: a `towerpy.Middleware` whose ``call()`` ends in
``await self.inner(request)`` is correct as it is. A layer with capacity of its own (permits,
tokens, queue places) uses this module, as every built-in limit does, so that its ``ready()``
reserves for the calling task and its ``call()`` uses that reservation. The rules it gets
right that way are the contract's:

- ``ready()`` reserves the capacity for the calling task's next ``call()``; other tasks, child
  tasks included, see it as taken; a second ``ready()`` keeps one reservation, not two.
- ``call()`` alone is always correct: without a reservation it acquires the capacity itself.
- A reservation that is never used is given back when its task ends; a task cancelled while
  waiting in ``ready()`` or ``call()`` holds nothing afterwards; `Service.drop_reservation`
  gives one back at once.

The pieces, by where they go (``key`` is whatever identifies the layer's capacity; a layer
passes ``self``):

- ``ready()``: ``await reserve(self, acquire, release, self.inner, acquire_nowait)``.
- ``try_ready()``: ``return await try_reserve(self, try_acquire, release, self.inner,
  acquire_nowait)``.
- ``call()``: ``token = await take_or_acquire(self, acquire, acquire_nowait, try_acquire)``,
  or, on a hot path that must not create a coroutine per call,
  ``token = take_or_acquire_nowait(self, acquire_nowait)`` followed by
  ``if token is None: token = await wait_for_capacity(self, acquire, try_acquire)``. Give the
  capacity back when the call returns, raises or is cancelled (``try``/``finally``).
- A layer that refuses a request without calling through calls
  ``self.inner.drop_reservation()`` first.
- `detach` / `attach` move every reservation of one task to another (a buffer's worker
  readies the inner service, then another task makes the call).
- `held`, `hold`, `take` and `drop` are the primitives the helpers above are made of.

Under `shedding` (what `LoadShed` uses), the acquisitions above raise `Shed`, an
`Overloaded`, where they would have had to wait (asking ``try_acquire``, when given, whether
the capacity is there: a remote backend can only tell with I/O); a layer that waits on
capacity some other way calls `refuse_if_shedding(self)` before it does. A layer that spent
capacity on a request that is then refused further in (`Shed` propagating out of its inner
call) gives it back.

A class whose ``call()`` alone does what ``ready()`` followed by ``call()`` would declares
``direct_call=True`` in its class statement (see `towerpy.Service`), and ``service(request)``
then skips the separate ``ready()``.

``docs/writing_layers.md`` builds a limiting layer from scratch with this module.
"""

from ._reserve import (
    Handoff,
    Reservation,
    Shed,
    attach,
    detach,
    drop,
    held,
    hold,
    refuse_if_shedding,
    reserve,
    shedding,
    take,
    take_or_acquire,
    take_or_acquire_nowait,
    try_reserve,
    wait_for_capacity,
)

__all__ = [
    "Handoff",
    "Reservation",
    "Shed",
    "attach",
    "detach",
    "drop",
    "held",
    "hold",
    "refuse_if_shedding",
    "reserve",
    "shedding",
    "take",
    "take_or_acquire",
    "take_or_acquire_nowait",
    "try_reserve",
    "wait_for_capacity",
]
