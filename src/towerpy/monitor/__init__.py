"""Watching towerpy's limits at work: a live view of long runs (extra ``rich``), and logging.

- `live` draws, refreshing, each limit's requests in flight, waiting and tokens, the runs
  done of N with a progress bar and an estimate of the time left, and what waited so far::

      async with monitor.live(agent, total=len(prompts)) as view:
          for prompt in prompts:
              await agent.run(prompt)
              view.advance()

- `log_events` turns on towerpy's log lines (``towerpy.limit``, ``towerpy.retry``...): DEBUG
  for each wait, retry, timeout and shed, WARNING when retries give up.
- `find_limits` finds the limits inside services and agents, and reads what they are doing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._limits import Limit, LimitState, find_limits
from ._live import LiveView
from ._logs import LOGGERS, log_events

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LOGGERS", "Limit", "LimitState", "LiveView", "find_limits", "live", "log_events"]


def live(
    *sources: object,
    total: int | None = None,
    console: Console | None = None,
    refresh: float = 0.25,
    title: str = "towerpy",
    ascii_only: bool = False,
) -> LiveView:
    """A live view of the limits in ``sources``; enter it with ``async with`` to show it.

    The view is a table, one row per limit (a keyed limit: per key) with its requests in
    flight, waiting, and tokens (a rate limit: available/burst, and its refill rate); then the
    runs done of ``total`` (count them with `LiveView.advance`) as a bar with the time elapsed
    and an estimate of the time left; then the waits towerpy reported while the view was open,
    by layer, and the retries, timeouts and shed requests. It is redrawn every ``refresh``
    seconds of the event loop's clock; on a console that is not a terminal only the last
    drawing is printed, when the block ends. A text render::

        towerpy · 4.0 s
        limit              in flight   waiting        tokens
        rate limit                           2   0/2 +1/s
        tools [search]           2/2         1
        runs ██████████░░░░░░░░░░░░░░░░░░░░ 1/3  33%   elapsed 4.0 s   ETA 8.0 s
        waited: concurrency_limit 1x 0.8 s, rate_limit 3x 1.5 s   retries 0 ...

    Args:
        sources: Services, agents and limiters to look into, or mappings from a label to
            them (see `find_limits` for how rows are found and labelled).
        total: How many runs make the whole job, for the progress bar; None: just count.
        console: The `rich.console.Console` to draw on (default: a new one on stdout).
        refresh: Seconds between drawings.
        title: The view's first line.
        ascii_only: Draw with ASCII characters only (so it does, too, on a console whose
            encoding has no others).

    Raises:
        ImportError: rich is not installed (``pip install 'towerpy[rich]'``).
        ValueError: No limit was found, ``total`` is below 1, or ``refresh`` is not positive.
    """
    return LiveView(
        find_limits(*sources),
        total=total,
        console=console,
        refresh=refresh,
        title=title,
        ascii_only=ascii_only,
    )
