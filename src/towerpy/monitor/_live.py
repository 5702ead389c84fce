"""The live view: a refreshing table of the limits, the runs done of N, and what waited."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Self, final

import anyio

from .. import _observe
from .._validate import check_positive_int, check_seconds, check_str

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup
    from rich.console import Console, RenderableType

    from ._limits import Limit, LimitState

__all__ = ["LiveView"]

_BAR = 30  # characters of the progress bar


def _need_rich() -> None:
    try:
        import rich  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "towerpy.monitor's live view needs rich: pip install 'towerpy[rich]'"
        ) from exc


def _clock(seconds: float) -> str:
    """``12.5 s`` under a minute, ``3:07`` above."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"{minutes}:{rest:02d}"


@final
class _Tally(_observe.Observer):
    """Counts what towerpy reported while the view is open."""

    def __init__(self) -> None:
        self.waits: dict[str, list[float]] = {}  # layer: [count, seconds]
        self.retries = 0
        self.timeouts = 0
        self.shed_count = 0

    def wait_ended(self, layer: str, reason: str, seconds: float) -> None:
        tally = self.waits.setdefault(layer, [0, 0.0])
        tally[0] += 1
        tally[1] += seconds

    def retrying(self, error: BaseException, attempt: int, delay: float) -> None:
        self.retries += 1

    def timed_out(self, error: BaseException) -> None:
        self.timeouts += 1

    def shed(self, layer: str) -> None:
        self.shed_count += 1


@final
class LiveView:
    """A view of limits at work, refreshed while ``async with`` it runs; see `live`.

    Inside ``async with view:`` a task redraws it every ``refresh`` seconds (on the event
    loop's clock) on the console; leaving the block draws it a last time. `render` returns
    the view as it is now, to print it yourself; `advance` counts runs done.
    """

    __slots__ = (
        "_ascii",
        "_console",
        "_group",
        "_limits",
        "_live",
        "_refresh",
        "_started",
        "_tally",
        "_title",
        "done",
        "total",
    )

    def __init__(
        self,
        limits: list[Limit],
        *,
        total: int | None,
        console: Console | None,
        refresh: float,
        title: str,
        ascii_only: bool = False,
    ) -> None:
        _need_rich()
        self._ascii = bool(ascii_only) or (console is not None and console.options.ascii_only)
        self._limits = limits
        self.total = None if total is None else check_positive_int("total", total)
        self.done = 0
        self._console = console
        self._refresh = check_seconds("refresh", refresh, positive=True, finite=True)
        self._title = check_str("title", title)
        self._tally = _Tally()
        self._started: float | None = None
        self._live: Any = None
        self._group: TaskGroup | None = None

    def advance(self, runs: int = 1) -> None:
        """Counts ``runs`` more runs done (of ``total``)."""
        self.done += check_positive_int("runs", runs)

    def states(self) -> list[LimitState]:
        """What every limit shown is doing now, a keyed limit one state per key."""
        return [state for limit in self._limits for state in limit.states()]

    def elapsed(self) -> float:
        """Seconds since the view was entered (or first drawn), on the event loop's clock."""
        now = anyio.current_time()
        if self._started is None:
            self._started = now
        return now - self._started

    def render(self) -> RenderableType:
        """The view as it is now: the limits' table, the runs' progress, the waits so far."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        elapsed = self.elapsed()
        table = Table(
            title=f"{self._title} {'-' if self._ascii else '·'} {_clock(elapsed)}",
            title_justify="left",
            box=None,
            pad_edge=False,
            show_edge=False,
        )
        table.add_column("limit")
        for header in ("in flight", "waiting", "tokens"):
            table.add_column(header, justify="right")
        for state in self.states():
            table.add_row(*(Text(cell) for cell in _cells(state)))  # no markup: keys are text
        return Group(table, Text(self._progress(elapsed)), *(Text(line) for line in self._waited()))

    def text(self, width: int = 80) -> str:
        """The view as it is now, as plain text ``width`` columns wide."""
        from rich.console import Console

        console = Console(
            width=width, color_system=None, force_terminal=False, record=True, file=io.StringIO()
        )
        console.print(self.render())
        text: str = console.export_text()
        return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"

    def _progress(self, elapsed: float) -> str:
        full, empty = ("#", ".") if self._ascii else ("█", "░")
        if self.total is None:
            return f"runs done {self.done}   elapsed {_clock(elapsed)}"
        shown = min(self.done, self.total)
        filled = _BAR * shown // self.total
        bar = full * filled + empty * (_BAR - filled)
        percent = 100 * shown // self.total
        if self.done == 0:
            eta = "ETA ?"
        else:
            eta = f"ETA {_clock(max(0.0, elapsed / self.done * (self.total - self.done)))}"
        return (
            f"runs {bar} {self.done}/{self.total} {percent:>3}%   elapsed {_clock(elapsed)}   {eta}"
        )

    def _waited(self) -> tuple[str, str]:
        tally = self._tally
        waits = ", ".join(
            f"{layer} {int(count)}x {_clock(seconds)}"
            for layer, (count, seconds) in sorted(tally.waits.items())
        )
        return (
            f"waited  {waits or 'nothing yet'}",
            f"retries {tally.retries}   timeouts {tally.timeouts}   shed {tally.shed_count}",
        )

    async def _redraw(self) -> None:
        while True:
            await anyio.sleep(self._refresh)
            self._live.update(self.render(), refresh=True)

    async def __aenter__(self) -> Self:
        """Starts the view: counting what waits, redrawing every ``refresh`` seconds."""
        if self._group is not None:
            raise RuntimeError("this live view is already running: enter it once at a time")
        from rich.live import Live

        self._started = anyio.current_time()
        _observe.install(self._tally)
        self._live = Live(
            self.render(),
            console=self._console,
            auto_refresh=False,  # redrawn from the event loop, where the clock is
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        group.start_soon(self._redraw, name="towerpy live view")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stops redrawing; draws the view a last time."""
        group = self._group
        if group is None:
            return
        self._group = None
        try:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
        finally:
            try:
                self._live.update(self.render(), refresh=True)
                self._live.stop()
                if not self._live.console.is_terminal:
                    self._live.console.line()  # rich ends a file's last drawing mid-line
            finally:
                _observe.uninstall(self._tally)


def _cells(state: LimitState) -> tuple[str, str, str, str]:
    if state.kind == "concurrency":
        return state.name, f"{state.in_flight}/{state.capacity:g}", str(state.waiting), ""
    if state.kind == "rate":
        tokens = f"{state.tokens or 0.0:.1f}/{state.capacity or 0.0:g} +{state.rate or 0.0:g}/s"
        return state.name, "", str(state.waiting), tokens
    return f"{state.name} ({state.shed} shed)", "", "", ""
