"""The bash tool, with real subprocesses: own working directories, timeouts, truncation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest

from towerpy.llm import Message
from towerpy.tools import ToolOutput
from towerpy.tools.bash import Bash, BashResult, bash_tool

pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_dead(pid: int) -> None:
    # another process's state can only be polled; the kernel delivers SIGKILL to every member of
    # the group, but they do not all die in the same instant
    with anyio.fail_after(10):
        while alive(pid):  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_each_call_gets_its_own_fresh_working_directory(tmp_path: Path) -> None:
    bash = Bash(sandbox_root=tmp_path)
    results: dict[int, BashResult] = {}

    async def run(n: int) -> None:
        results[n] = await bash.run(f"touch mine-{n}; sleep 0.2; pwd; ls")

    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(run, n)
    cwds = {n: r.stdout.splitlines()[0] for n, r in results.items()}
    assert len(set(cwds.values())) == 4
    for n, result in results.items():
        assert Path(cwds[n]).parent == Path(bash.sandbox_root)
        assert result.stdout.splitlines()[1:] == [f"mine-{n}"]  # nobody else's files
        assert not await anyio.Path(cwds[n]).exists()  # removed after the call
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


async def test_working_directories_can_be_kept(tmp_path: Path) -> None:
    bash = Bash(sandbox_root=tmp_path, keep_workdirs=True)
    result = await bash.run("echo hello > greeting.txt; pwd")
    workdir = anyio.Path(result.stdout.strip())
    assert await (workdir / "greeting.txt").read_text() == "hello\n"


async def test_exit_code_stdout_and_stderr_are_in_the_result() -> None:
    result = await Bash().run("echo out; echo err >&2; exit 7")
    assert result == BashResult(exit_code=7, stdout="out\n", stderr="err\n")


async def test_a_timeout_kills_the_command_and_its_children() -> None:
    bash = Bash(timeout=0.5)
    start = anyio.current_time()
    result = await bash.run("sleep 60 & echo $!; (sleep 60; echo never) & wait")
    assert anyio.current_time() - start < 5
    assert result.timed_out
    assert result.exit_code == -9
    assert "timed out after 0.5 seconds" in result.stderr
    child = int(result.stdout.split()[0])
    await wait_dead(child)


async def test_cancelling_the_call_kills_the_process_group() -> None:
    bash = Bash()
    pid_file_dir = Path(bash.sandbox_root)

    with anyio.move_on_after(0.5):
        await bash.run(f"sleep 60 & echo $! > {pid_file_dir}/child.pid; wait")
    child = int(await anyio.Path(pid_file_dir / "child.pid").read_text())
    await wait_dead(child)


async def test_background_children_left_behind_die_with_the_call() -> None:
    result = await Bash().run("sleep 60 > /dev/null 2>&1 & echo $!")
    assert result.exit_code == 0
    await wait_dead(int(result.stdout))


async def test_output_past_the_limit_is_cut_in_the_middle_and_says_so() -> None:
    bash = Bash(max_output=1000)
    result = await bash.run("seq 1 100000; seq 1 10 >&2")
    total = sum(len(f"{n}\n") for n in range(1, 100_001))
    assert result.truncated
    assert result.stdout.startswith("1\n2\n3\n")
    assert result.stdout.endswith("99999\n100000\n")
    assert f"[... {total - 1000} bytes of output truncated ...]" in result.stdout
    assert len(result.stdout.encode()) < 1100
    assert result.stderr == "".join(f"{n}\n" for n in range(1, 11))


async def test_environment_can_be_set() -> None:
    result = await Bash(env={"GREETING": "hi", "PATH": os.environ["PATH"]}).run("echo $GREETING")
    assert result.stdout == "hi\n"


async def test_the_tool_takes_a_command_and_its_result_reads_as_json_for_the_model() -> None:
    bash = bash_tool(concurrency_limit=None, timeout=10)
    assert bash.name == "bash"
    assert bash.spec.parameters["required"] == ["command"]
    assert "fresh, empty working directory" in bash.spec.description
    result = await bash({"command": "echo hi; exit 3"})
    assert isinstance(result, BashResult)
    text = Message.tool(ToolOutput(id="1", name="bash", content=result)).content
    assert text is not None
    assert json.loads(text) == {
        "exit_code": 3,
        "stdout": "hi\n",
        "stderr": "",
        "truncated": False,
        "timed_out": False,
    }


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Bash(timeout=0)
    with pytest.raises(
        TypeError, match=r"timeout must be a finite number of seconds > 0, got bool"
    ):
        Bash(timeout=True)  # not one second
    with pytest.raises(TypeError, match="timeout"):
        bash_tool(timeout="30")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_output must be >= 2, got 1"):
        Bash(max_output=1)
    with pytest.raises(TypeError, match="max_output must be an int >= 2"):
        Bash(max_output="30000")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="not on PATH"):
        Bash(shell="no-such-shell-here")


def test_the_bash_tool_runs_at_most_four_commands_at_once_by_default() -> None:
    assert bash_tool().concurrency_limit == 4
    assert bash_tool(concurrency_limit=2).concurrency_limit == 2


async def test_a_background_child_holding_the_output_open_does_not_hold_up_the_result() -> None:
    bash = Bash(timeout=30)
    start = anyio.current_time()
    result = await bash.run("sleep 60 & echo $!; echo done")
    assert anyio.current_time() - start < 10
    assert (result.exit_code, result.timed_out) == (0, False)
    child, done = result.stdout.split()
    assert done == "done"
    await wait_dead(int(child))


def test_a_sandbox_root_made_for_the_tool_is_removed_with_it() -> None:
    import gc

    bash = Bash()
    root = Path(bash.sandbox_root)
    assert root.is_dir()
    del bash
    gc.collect()
    assert not root.exists()


def test_the_bash_tool_is_exported_from_the_tools_package() -> None:
    import towerpy.tools

    assert towerpy.tools.bash_tool is bash_tool
    assert {"Bash", "BashResult", "bash_tool"} <= set(towerpy.tools.__all__)
