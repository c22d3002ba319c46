"""deploy/supervisor.py with tiny `python -c` children (no servers): output prefixed with each child's
name, restarts with backoff, stop by SIGTERM then SIGKILL, and `fanout up`'s programs."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from deploy.supervisor import Backoff, Output, Program, Supervisor, _Slot
from fanout.settings import Settings
from services.up import programs

PY = sys.executable
SLEEP = "import time; print('up', flush=True); time.sleep(60)"
IGNORES_TERM = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + SLEEP
FAST = Backoff(initial=0.05, maximum=0.2, reset_after=60)


def py(name: str, code: str) -> Program:
    return Program(name, [PY, "-c", code])


def started_pids(text: str, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"started {re.escape(name)} \(pid (\d+)\)", text)]


def printed(text: str, name: str, line: str) -> bool:
    """Whether `name`'s output (prefix padded to the longest name) has this line."""
    return re.search(rf"^{re.escape(name)} *\| {re.escape(line)}$", text, re.MULTILINE) is not None


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


@contextmanager
def supervising(sup: Supervisor) -> Iterator[dict[str, int]]:
    """Run the supervisor in a thread (so no signal handlers); stop it on the way out."""
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(code=sup.run()))
    thread.start()
    try:
        yield result
    finally:
        sup.request_stop()
        thread.join(30)
        assert not thread.is_alive()


def make(programs: list[Program], **kwargs: object) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    names = ["up", *(p.name for p in programs)]
    return Supervisor(programs, output=Output(names, out), poll=0.02, **kwargs), out  # type: ignore[arg-type]


@pytest.mark.parametrize(("quick_exits", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)])
def test_backoff_doubles_with_each_quick_exit_up_to_the_cap(quick_exits: int, delay: float) -> None:
    assert Backoff().delay(quick_exits) == delay


def test_a_healthy_run_starts_the_backoff_over() -> None:
    sup, out = make([py("flaky", "")], backoff=Backoff(initial=1, maximum=30, reset_after=60))
    slot = _Slot(sup.programs[0])
    for uptime in (0.5, 3.0, 59.9, 60.0, 2.0):  # quick, quick, quick, healthy, quick
        sup._schedule_restart(slot, "flaky exited", uptime)
    assert re.findall(r"restarting in ([\d.]+)s", out.getvalue()) == ["1", "2", "4", "1", "2"]


def test_output_prefixes_every_line_with_the_padded_name_and_no_color_off_a_terminal() -> None:
    out = io.StringIO()
    output = Output(["up", "worker-1"], out)
    output.line("worker-1", "hello [bold]not markup[/bold]")
    output.line("up", "a message", style="bold")
    output.line("x" * 90, "a long name and " + "a long line " * 20)
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["worker-1 | hello [bold]not markup[/bold]", "up       | a message"]
    assert len(lines) == 3 and lines[2].rstrip().endswith("a long line")  # never wrapped
    assert "\x1b[" not in out.getvalue()


def test_each_child_line_is_prefixed_with_its_name() -> None:
    sup, out = make([py("one", "print('first'); print('second'); import time; time.sleep(60)"),
                     py("two", "print('other'); import time; time.sleep(60)")])
    with supervising(sup):
        wait_for(lambda: "second" in out.getvalue() and "other" in out.getvalue())
    # Each child's lines in its order; the two children's lines may interleave (one reader thread each).
    lines = out.getvalue().splitlines()
    assert [line for line in lines if line.startswith("one | ")] == ["one | first", "one | second"]
    assert [line for line in lines if line.startswith("two | ")] == ["two | other"]


def test_a_child_that_keeps_exiting_is_restarted_with_growing_delays() -> None:
    sup, out = make([py("flaky", "import sys; print('hi'); sys.exit(3)")], backoff=FAST)
    with supervising(sup) as result:
        wait_for(lambda: len(started_pids(out.getvalue(), "flaky")) >= 5)
    assert result["code"] == 0
    delays = re.findall(r"flaky exited with code 3 after [\d.]+s; restarting in ([\d.]+)s", out.getvalue())
    assert delays[:4] == ["0.05", "0.1", "0.2", "0.2"]


def test_a_killed_child_is_restarted_and_said_so() -> None:
    sup, out = make([py("victim", SLEEP)], backoff=FAST)
    with supervising(sup):
        wait_for(lambda: printed(out.getvalue(), "victim", "up"))
        [first] = started_pids(out.getvalue(), "victim")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(started_pids(out.getvalue(), "victim")) == 2)
    assert "victim was killed by SIGKILL" in out.getvalue()
    assert all(gone(pid) for pid in started_pids(out.getvalue(), "victim"))


def test_stop_sends_sigterm_then_sigkill_to_a_child_that_ignores_it() -> None:
    sup, out = make([py("polite", SLEEP), py("stubborn", IGNORES_TERM)], stop_timeout=0.5)
    with supervising(sup) as result:
        wait_for(lambda: printed(out.getvalue(), "polite", "up") and printed(out.getvalue(), "stubborn", "up"))
        started = time.monotonic()
    assert time.monotonic() - started < 10
    text = out.getvalue()
    assert result["code"] == 0
    assert "polite stopped (SIGTERM)" in text
    assert "stubborn (pid" in text and "still running: SIGKILL" in text and "stubborn stopped (SIGKILL)" in text
    assert text.rstrip().endswith("everything stopped")
    assert all(gone(pid) for name in ("polite", "stubborn") for pid in started_pids(text, name))


def test_nothing_starts_when_a_before_program_fails() -> None:
    sup, out = make([py("service", SLEEP)], before=[py("migrate", "import sys; print('no'); sys.exit(2)")])
    assert sup.run() == 2
    assert printed(out.getvalue(), "migrate", "no")
    assert "migrate failed with exit code 2" in out.getvalue()
    assert started_pids(out.getvalue(), "service") == []


def test_before_programs_run_in_order_then_the_others_start() -> None:
    sup, out = make([py("service", SLEEP)], before=[py("a", "print('a done')"), py("b", "print('b done')")])
    with supervising(sup):
        wait_for(lambda: printed(out.getvalue(), "service", "up"))
    order = [line.split("|", 1)[1].strip() for line in out.getvalue().splitlines()]
    assert order[:6] == [f"started a (pid {started_pids(out.getvalue(), 'a')[0]})", "a done",
                         f"started b (pid {started_pids(out.getvalue(), 'b')[0]})", "b done",
                         f"started service (pid {started_pids(out.getvalue(), 'service')[0]})", "up"]


SCRIPT = textwrap.dedent("""
    import sys
    from deploy.supervisor import Backoff, Program, Supervisor
    sleep = "import time; print('up', flush=True); time.sleep(60)"
    programs = [Program(name, [sys.executable, "-c", sleep]) for name in ("one", "two")]
    sys.exit(Supervisor(programs, stop_timeout=5).run())
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_child_and_exits_0(signum: int) -> None:
    proc = subprocess.Popen([PY, "-c", SCRIPT], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert proc.stdout is not None
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        wait_for(lambda: "one | up\n" in seen and "two | up\n" in seen)
        pids = started_pids("".join(seen), "one") + started_pids("".join(seen), "two")
        proc.send_signal(signum)
        assert proc.wait(20) == 0
        reader.join(5)
        assert f"got {signal.Signals(signum).name}: stopping one, two" in "".join(seen)
        assert len(pids) == 2 and all(gone(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_fanout_up_runs_migrate_then_n_workers_on_their_own_metrics_ports_the_notifier_and_both_apis() -> None:
    s = Settings(worker_metrics_port=7000, read_api_port=7100, ingest_api_port=7200, notifier_metrics_port=7300,
                 keyspace="ks_up")
    migrate, long_lived = programs(s, workers=3)
    assert migrate.argv[-1] == "migrate" and migrate.ready_url is None
    assert [p.name for p in long_lived] == ["worker-1", "worker-2", "worker-3", "notifier", "read-api", "ingest-api"]
    assert [p.argv[-1] for p in long_lived] == ["worker"] * 3 + ["notifier", "read-api", "ingest-api"]
    for program in [migrate, *long_lived]:
        assert program.argv[:3] == [PY, "-m", "services.cli"]
        assert program.env is not None and program.env["FANOUT_KEYSPACE"] == "ks_up"
    ports = [p.env["FANOUT_WORKER_METRICS_PORT"] for p in long_lived[:3] if p.env]
    assert ports == ["7000", "7001", "7002"]
    assert [p.ready_url for p in long_lived] == [
        "http://127.0.0.1:7000/metrics", "http://127.0.0.1:7001/metrics", "http://127.0.0.1:7002/metrics",
        "http://127.0.0.1:7300/metrics", "http://127.0.0.1:7100/healthz", "http://127.0.0.1:7200/healthz",
    ]
