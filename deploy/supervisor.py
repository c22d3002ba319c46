"""Run a few long-lived processes in the foreground, as a small process manager does (foreman, honcho):
each child's output line-prefixed with its name, a child that exits unexpectedly restarted with
exponential backoff, and every child stopped (SIGTERM, then SIGKILL after a timeout, by pid) when the
supervisor gets SIGINT or SIGTERM. `fanout up` (services/up.py) runs the pipeline with it.

Children run in sessions of their own, so a Ctrl-C in the terminal reaches only the supervisor, which
then stops them itself; otherwise they would die of the SIGINT at the same moment and look like crashes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.text import Text

from fanout import retries

COLORS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")


@dataclass(frozen=True)
class Program:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None  # None: this process's environment
    ready_url: str | None = None  # polled after each start until it answers 200, then announced


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def delay(self, quick_exits: int) -> float:
        """Seconds to wait before restarting a process that has exited `quick_exits` times in a row, each
        time within `reset_after` seconds of its start: `initial`, doubling with each, up to `maximum`."""
        return retries.delay(retries.backoff(self.initial, self.maximum), quick_exits)


class Output:
    """Lines prefixed with the name of the process they come from, colored on a terminal; thread-safe."""

    def __init__(self, names: Iterable[str], file: IO[str] | None = None) -> None:
        # soft_wrap: a long line is never cut or wrapped to the terminal width.
        self.console = Console(file=file or sys.stdout, soft_wrap=True, highlight=False, emoji=False)
        self.names = list(names)
        self.width = max(map(len, self.names), default=0)
        self._lock = threading.RLock()

    def line(self, name: str, text: str, style: str | None = None) -> None:
        if name not in self.names:
            self.names.append(name)
            self.width = max(self.width, len(name))
        color = style or COLORS[self.names.index(name) % len(COLORS)]
        line = Text()
        line.append(f"{name:<{self.width}} | ", style=color)  # only the prefix takes the color
        # from_ansi: a child's own colors survive on a terminal and are stripped elsewhere.
        line.append_text(Text.from_ansi(text, style="bold" if style else ""))
        with self._lock:
            self.console.print(line)


@dataclass
class _Slot:
    program: Program
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None
    started: float = 0.0
    quick_exits: int = 0  # exits in a row, each within the backoff's `reset_after` of the start before it
    restart_at: float = 0.0
    ready: bool = False
    next_check: float = 0.0


@dataclass
class Supervisor:
    programs: Sequence[Program]
    before: Sequence[Program] = ()  # run to completion, in order, before the others start
    backoff: Backoff = field(default_factory=Backoff)
    stop_timeout: float = 20.0  # from SIGTERM to SIGKILL
    name: str = "up"
    output: Output | None = None
    poll: float = 0.1
    out: Output = field(init=False)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)
    _hurry: threading.Event = field(init=False, default_factory=threading.Event)  # a second signal: SIGKILL now
    _signal: str = field(init=False, default="")

    def __post_init__(self) -> None:
        names = [self.name, *(p.name for p in (*self.before, *self.programs))]
        self.out = self.output or Output(names)

    def say(self, message: str) -> None:
        self.out.line(self.name, message, style="bold")

    def request_stop(self) -> None:
        """Stop every child and return from run() (what SIGINT and SIGTERM do)."""
        if self._stop.is_set():
            self._hurry.set()
        self._stop.set()

    def run(self) -> int:
        """Run `before` to completion, then supervise `programs` until asked to stop. Returns 0 once
        everything has stopped, or the exit code of a `before` program that failed."""
        with self._signals():
            for program in self.before:
                code = self._run_to_end(program)
                if self._stop.is_set():
                    return 0
                if code != 0:
                    self.say(f"{program.name} failed with exit code {code}; nothing else started")
                    return code
            slots = [_Slot(p) for p in self.programs]
            for slot in slots:
                self._start(slot)
            while not self._stop.is_set():
                now = time.monotonic()
                for slot in slots:
                    if slot.proc is None:
                        if now >= slot.restart_at:
                            self._start(slot)
                    elif slot.proc.poll() is not None:
                        self._exited(slot, now)
                    elif not slot.ready and slot.program.ready_url and now >= slot.next_check:
                        self._check_ready(slot, now)
                self._stop.wait(self.poll)
            self._stop_all(slots)
        return 0

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set in the main thread; request_stop() works anywhere
            return

        def handle(signum: int, _: Any) -> None:
            # Nothing printed here: the handler may interrupt the main thread in the middle of a print.
            self._signal = signal.Signals(signum).name
            self.request_stop()

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _spawn(self, program: Program) -> tuple[subprocess.Popen[bytes], threading.Thread]:
        env = {**(os.environ if program.env is None else program.env), "PYTHONUNBUFFERED": "1"}
        # A child's own rich console would wrap at 80 columns on our pipe; give it the room left after the prefix.
        console = self.out.console
        env.setdefault("COLUMNS", str(console.width - self.out.width - 3 if console.is_terminal else 200))
        proc = subprocess.Popen(list(program.argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        pump = threading.Thread(target=self._pump, args=(program.name, proc), daemon=True)
        pump.start()
        self.say(f"started {program.name} (pid {proc.pid})")
        return proc, pump

    def _pump(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.out.line(name, raw.decode(errors="replace").rstrip("\r\n"))

    def _run_to_end(self, program: Program) -> int:
        proc, pump = self._spawn(program)
        while proc.poll() is None:
            if self._stop.wait(self.poll):
                self._terminate([(program.name, proc)])
                break
        pump.join(5)
        return proc.wait()

    def _start(self, slot: _Slot) -> None:
        slot.ready, slot.next_check, slot.started = False, 0.0, time.monotonic()
        try:
            slot.proc, slot.pump = self._spawn(slot.program)
        except OSError as exc:  # e.g. the program is not installed: retried like a crash
            slot.proc = None
            self._schedule_restart(slot, f"{slot.program.name} could not start ({exc})", 0.0)

    def _exited(self, slot: _Slot, now: float) -> None:
        assert slot.proc is not None
        code = slot.proc.returncode
        if slot.pump is not None:
            slot.pump.join(2)  # the last lines it printed come before the news of its exit
        slot.proc = slot.pump = None
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        self._schedule_restart(slot, f"{slot.program.name} {how} after {now - slot.started:.1f}s", now - slot.started)

    def _schedule_restart(self, slot: _Slot, what: str, uptime: float) -> None:
        # A run of `reset_after` seconds or more counts as healthy: the backoff starts over.
        slot.quick_exits = 1 if uptime >= self.backoff.reset_after else slot.quick_exits + 1
        delay = self.backoff.delay(slot.quick_exits)
        slot.restart_at = time.monotonic() + delay
        self.say(f"{what}; restarting in {delay:g}s")

    def _check_ready(self, slot: _Slot, now: float) -> None:
        url = slot.program.ready_url
        assert url is not None
        slot.next_check = now + 0.5
        try:
            with urllib.request.urlopen(url, timeout=0.5) as response:
                slot.ready = response.status == 200
        except OSError:
            return
        if slot.ready:
            self.say(f"{slot.program.name} is ready: {url}")

    def _stop_all(self, slots: list[_Slot]) -> None:
        running = [(s.program.name, s.proc) for s in slots if s.proc is not None and s.proc.poll() is None]
        if running:
            self.say((f"got {self._signal}: " if self._signal else "") + "stopping "
                     + ", ".join(name for name, _ in running))
        self._terminate(running)
        for slot in slots:
            if slot.pump is not None:
                slot.pump.join(2)
        self.say("everything stopped")

    def _terminate(self, procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        """SIGTERM to each, SIGKILL to those still running after stop_timeout (or at a second signal)."""
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(p.poll() is None for _, p in procs) and time.monotonic() < deadline and not self._hurry.is_set():
            time.sleep(0.05)
        for name, proc in procs:
            if proc.poll() is None:
                self.say(f"{name} (pid {proc.pid}) still running: SIGKILL")
                proc.kill()
            code = proc.wait()
            how = f"{signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            self.say(f"{name} stopped ({how})")
