"""A ready-made tool that runs shell commands, each in a fresh working directory.

A fresh working directory is NOT a security sandbox. The command runs as the current user,
with the current user's permissions, network and environment: it can read and write anything
that user can, anywhere on the machine. The working directory only keeps parallel calls from
stepping on each other's files. Run untrusted commands inside a real sandbox (a container, a
VM, a locked-down user) and point this tool at it.

Example:
    >>> router = ToolRouter([bash_tool(timeout=30.0)])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, final

import anyio
import anyio.to_thread
from pydantic import BaseModel

from .._validate import check_int, check_seconds
from .tool import Tool

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.abc import ByteReceiveStream, Process

__all__ = ["Bash", "BashResult", "bash_tool"]

_EXIT_GRACE = 0.5  # seconds the output may keep coming after the shell has exited


class BashResult(BaseModel, frozen=True):
    """What one command did.

    Attributes:
        exit_code: The shell's exit status; negative when a signal killed it (``-9`` after a
            timeout).
        stdout: Its standard output, truncated in the middle past the size limit (saying so).
        stderr: Its standard error, likewise; after a timeout it ends with a note saying so.
        truncated: Whether any output was cut.
        timed_out: Whether the command ran out of time and its process group was killed.
    """

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool = False
    timed_out: bool = False


@final
class _Capture:
    """Keeps the first and last bytes of a stream; counts, but drops, what lies between."""

    __slots__ = ("head", "head_limit", "tail", "tail_limit", "total")

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    async def drain(self, stream: ByteReceiveStream) -> None:
        async for chunk in stream:
            self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_limit:  # trim now and then, not on every chunk
                del self.tail[: -self.tail_limit]

    @property
    def truncated(self) -> bool:
        return self.total > self.head_limit + self.tail_limit

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_limit :]) if self.tail_limit else b""
        head = self.head.decode(errors="replace")
        dropped = self.total - len(self.head) - len(tail)
        if dropped <= 0:
            return head + tail.decode(errors="replace")
        note = f"\n[... {dropped} bytes of output truncated ...]\n"
        return head + note + tail.decode(errors="replace")


@final
class Bash:
    """Runs shell commands, each in its own fresh working directory under a sandbox root.

    Not a security sandbox: see the module's documentation.

    Args:
        sandbox_root: Where the working directories go (created if missing; default: a new
            temporary directory).
        timeout: Seconds a command may run; then its whole process group is killed and the
            result says ``timed_out``.
        max_output: Bytes of stdout, and of stderr, kept; past that the middle is cut.
        shell: The shell to run commands with (``bash -c command``).
        env: Environment variables for the command (default: this process's environment).
        keep_workdirs: Keep each call's working directory after it ends (default: delete it).

    Raises:
        RuntimeError: Not a POSIX system (process groups are needed to kill a command's
            children).
        FileNotFoundError: The shell is not on ``PATH``.
        TypeError: ``timeout`` is not a number or ``max_output`` not an int (bools are
            refused too).
        ValueError: ``timeout`` is not positive and finite, or ``max_output`` is below 2.
    """

    __slots__ = (
        "__weakref__",
        "env",
        "keep_workdirs",
        "max_output",
        "sandbox_root",
        "shell",
        "timeout",
    )

    def __init__(
        self,
        *,
        sandbox_root: str | os.PathLike[str] | None = None,
        timeout: float = 60.0,
        max_output: int = 30_000,
        shell: str = "bash",
        env: Mapping[str, str] | None = None,
        keep_workdirs: bool = False,
    ) -> None:
        if os.name != "posix":
            raise RuntimeError("the bash tool needs a POSIX system (it kills process groups)")
        check_seconds("timeout", timeout, positive=True, finite=True)  # a bool is not 1 s
        check_int("max_output", max_output, minimum=2)  # bytes: a head and a tail
        found = shutil.which(shell)
        if found is None:
            raise FileNotFoundError(f"shell {shell!r} is not on PATH; pass shell='/bin/sh'")
        if sandbox_root is None:
            root = Path(tempfile.mkdtemp(prefix="towerpy-bash-"))
            weakref.finalize(self, shutil.rmtree, root, True)  # ours: removed with this object
        else:
            root = Path(sandbox_root).resolve()
            root.mkdir(parents=True, exist_ok=True)
        self.sandbox_root = root
        self.timeout = float(timeout)
        self.max_output = max_output
        self.shell = found
        self.env = dict(env) if env is not None else None
        self.keep_workdirs = keep_workdirs

    async def run(self, command: str) -> BashResult:
        """Runs a shell command in a fresh, empty working directory.

        Args:
            command: The command line, run with ``bash -c``.
        """
        workdir = await anyio.to_thread.run_sync(self._new_workdir)
        try:
            return await self._run_in(command, workdir)
        finally:
            if not self.keep_workdirs:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(shutil.rmtree, workdir, True)

    def _new_workdir(self) -> str:
        return tempfile.mkdtemp(prefix="call-", dir=self.sandbox_root)

    async def _run_in(self, command: str, workdir: str) -> BashResult:
        stdout, stderr = _Capture(self.max_output), _Capture(self.max_output)
        process = await anyio.open_process(
            [self.shell, "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=self.env,
            start_new_session=True,  # its own process group: one signal reaches every child
        )
        assert process.stdout is not None
        assert process.stderr is not None
        streams = ((stdout, process.stdout), (stderr, process.stderr))
        try:
            with anyio.move_on_after(self.timeout) as scope:
                async with anyio.create_task_group() as tg:
                    read = anyio.Event()
                    tg.start_soon(_read_all, streams, read)
                    await process.wait()
                    # children left in the background may hold the pipes open: give them a
                    # moment to finish writing, then stop reading (they are killed below)
                    with anyio.move_on_after(_EXIT_GRACE):
                        await read.wait()
                    tg.cancel_scope.cancel()
        finally:
            # also on success: background children left behind die with the call
            await _kill_group(process)
        error = stderr.text()
        if scope.cancelled_caught:
            note = (
                f"[timed out after {self.timeout:g} seconds: the command and its children "
                f"were killed]"
            )
            error = f"{error}\n{note}" if error and not error.endswith("\n") else error + note
        exit_code = process.returncode
        return BashResult(
            exit_code=exit_code if exit_code is not None else -signal.SIGKILL,
            stdout=stdout.text(),
            stderr=error,
            truncated=stdout.truncated or stderr.truncated,
            timed_out=scope.cancelled_caught,
        )

    def tool(
        self,
        *,
        name: str = "bash",
        concurrency_limit: int | None = 4,
        description: str | None = None,
    ) -> Tool:
        """Returns the tool that models call: ``bash(command)``."""
        text = description or (
            f"Runs a shell command with bash in a fresh, empty working directory and returns "
            f"its exit code, stdout and stderr. Commands are killed after {self.timeout:g} "
            f"seconds; output past {self.max_output} bytes is cut in the middle."
        )
        return Tool(self.run, name=name, description=text, concurrency_limit=concurrency_limit)

    def __repr__(self) -> str:
        return f"Bash(sandbox_root={str(self.sandbox_root)!r}, timeout={self.timeout:g})"


async def _read_all(
    streams: tuple[tuple[_Capture, ByteReceiveStream], ...], done: anyio.Event
) -> None:
    async with anyio.create_task_group() as tg:
        for capture, stream in streams:
            tg.start_soon(capture.drain, stream)
    done.set()


async def _kill_group(process: Process) -> None:
    with anyio.CancelScope(shield=True):
        # a process group keeps its id while any member lives, so this reaches the children
        # even when the shell itself has exited
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        await process.aclose()


def bash_tool(
    *,
    name: str = "bash",
    sandbox_root: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
    max_output: int = 30_000,
    concurrency_limit: int | None = 4,
    shell: str = "bash",
    env: Mapping[str, str] | None = None,
    keep_workdirs: bool = False,
) -> Tool:
    """Makes the bash tool: a model sends a command, and gets its exit code and output back.

    Each call runs ``bash -c command`` in a fresh, empty working directory under
    ``sandbox_root``, so parallel calls never share a working directory; at most
    ``concurrency_limit`` calls run at once (4 by default). A command running past ``timeout``
    is killed with its whole process group, and its result says so. Stdout and stderr are kept
    up to ``max_output`` bytes each, cut in the middle (saying so) past that.

    A working directory is NOT a security sandbox: the command can do anything the current user
    can. See the module's documentation.

    Args:
        name: The tool's name.
        sandbox_root: Where the working directories go (default: a new temporary directory).
        timeout: Seconds a command may run.
        max_output: Bytes of stdout, and of stderr, kept.
        concurrency_limit: The most commands running at once (None: no limit).
        shell: The shell (default ``bash``).
        env: Environment variables for commands (default: this process's environment).
        keep_workdirs: Keep working directories after each call (default: delete them).

    Returns:
        The tool; its calls return a `BashResult`.
    """
    runner = Bash(
        sandbox_root=sandbox_root,
        timeout=timeout,
        max_output=max_output,
        shell=shell,
        env=env,
        keep_workdirs=keep_workdirs,
    )
    return runner.tool(name=name, concurrency_limit=concurrency_limit)
