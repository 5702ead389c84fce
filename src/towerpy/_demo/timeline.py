"""Records when each model call and tool call waited and ran, and draws it in 80 columns."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, final

from typing_extensions import override

from .._backend import current_time
from .._service import Middleware, Service

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["LABEL_WIDTH", "Recorded", "Row", "Timeline", "mark_started"]

LABEL_WIDTH = 27
_AGENT_WIDTH = 9

_current: ContextVar[Row | None] = ContextVar("towerpy_demo_row", default=None)

_BARS = {"run": "█", "wait": "░", "timeout": "✕", "error": "!"}
_ASCII = {"run": "#", "wait": ".", "timeout": "X", "error": "!"}


@final
class Row:
    """One call on the timeline: asked at ``asked``, running from ``started`` to ``ended``."""

    __slots__ = ("agent", "asked", "ended", "kind", "label", "name", "started", "status")

    def __init__(self, agent: str, kind: str, name: str, label: str, asked: float) -> None:
        self.agent = agent
        self.kind = kind  # "model" or "tool"
        self.name = name
        self.label = label
        self.asked = asked
        self.started: float | None = None
        self.ended: float | None = None
        self.status = "ok"  # "ok", "timeout" or "error"

    @property
    def waited(self) -> float:
        """Seconds between being asked for and starting to run."""
        return (self.started if self.started is not None else self.asked) - self.asked

    @property
    def ran(self) -> float:
        """Seconds spent running."""
        if self.started is None or self.ended is None:
            return 0.0
        return self.ended - self.started


def mark_started() -> None:
    """Marks the call this task is making as running (called where the real work begins)."""
    row = _current.get()
    if row is not None and row.started is None:
        row.started = current_time()


@final
class Recorded(Middleware[Any, Any], direct_call=True):  # the waits below are in the row
    """Adds a row per call: asked when the call enters, ended when it leaves this layer.

    ``ready()`` is the inner service's; ``call()`` records and passes the request on, and
    marks a timeout or an error from the inner service on the row before re-raising it.
    """

    __slots__ = ("_asked", "_make", "_timeline")

    def __init__(
        self,
        inner: Service[Any, Any],
        timeline: Timeline,
        make: Callable[[Any, float], Row],
        asked: Callable[[], float | None] | None = None,
    ) -> None:
        super().__init__(inner)
        self._timeline = timeline
        self._make = make
        self._asked = asked

    @override
    async def call(self, request: Any) -> Any:
        now = current_time()
        asked = self._asked() if self._asked is not None else None
        row = self._make(request, now if asked is None else asked)
        self._timeline.rows.append(row)
        token = _current.set(row)
        try:
            response = await self.inner(request)
        except TimeoutError:
            row.status = "timeout"
            raise
        except Exception:
            row.status = "error"
            raise
        finally:
            _current.reset(token)
            mark_started_at(row, current_time())
            row.ended = current_time()
        return response


def mark_started_at(row: Row, when: float) -> None:
    """Marks ``row`` as started at ``when`` unless it already is."""
    if row.started is None:
        row.started = when


@final
class Timeline:
    """The rows of every call in a run, and how to draw them."""

    __slots__ = ("rows", "start")

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.start = 0.0

    def begin(self) -> None:
        """Sets time zero to now."""
        self.start = current_time()

    @property
    def end(self) -> float:
        """When the last call ended, in seconds from the start."""
        return max((row.ended or 0.0 for row in self.rows), default=self.start) - self.start

    def render(self, agents: Iterable[str], *, width: int = 80, ascii_only: bool = False) -> str:
        """Draws one line per call, grouped by agent, time running left to right."""
        bars = _ASCII if ascii_only else _BARS
        columns = max(20, width - LABEL_WIDTH - 1)
        step = max(self.end, 1e-9) / columns  # the last call ends at the right edge
        lines = [" " * LABEL_WIDTH + _axis(columns, step)]
        for agent in agents:
            first = True
            for row in (r for r in self.rows if r.agent == agent):
                name = agent if first else ""
                first = False
                label = f"{name:<{_AGENT_WIDTH}.{_AGENT_WIDTH - 1}}{_clip(row.label)} "
                lines.append(label + self._bar(row, step, columns, bars))
        legend = (
            f"{bars['run']} running  {bars['wait']} waiting for a limit  "
            f"{bars['timeout']} timed out"
        )
        lines.append(" " * LABEL_WIDTH + legend)
        return "\n".join(line.rstrip() for line in lines)

    def _bar(self, row: Row, step: float, columns: int, bars: dict[str, str]) -> str:
        def column(t: float | None) -> int:
            return round(((row.asked if t is None else t) - self.start) / step)

        asked = min(column(row.asked), columns - 1)
        started = min(column(row.started), columns - 1)
        ended = min(columns, max(started + 1, column(row.ended)))  # at least one cell
        cells = [" "] * columns
        cells[asked:started] = bars["wait"] * (started - asked)
        cells[started:ended] = bars["run"] * (ended - started)
        if row.status in ("timeout", "error"):
            cells[ended - 1] = bars[row.status]
        return "".join(cells)


def _clip(label: str) -> str:
    room = LABEL_WIDTH - _AGENT_WIDTH - 1
    return f"{label:<{room}}" if len(label) <= room else label[: room - 1] + "…"


def _axis(columns: int, step: float) -> str:
    # a tick every 1, 2, 5, 10… seconds, whichever leaves room for the labels
    every = next(s for s in (1, 2, 5, 10, 20, 50, 100, 1e9) if s / step >= 4)
    cells = [" "] * columns
    second = 0.0
    while (col := round(second / step)) < columns:
        tick = f"{second:g}s"
        if col + len(tick) <= columns:
            cells[col : col + len(tick)] = tick
        second += every
    return "".join(cells)
