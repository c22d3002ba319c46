"""A Server-Sent Events reader for tests: one thread per connection collects the events of a live feed."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class Event:
    event: str
    data: dict[str, Any]
    id: str | None


@dataclass
class Stream:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> Stream:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.connected.wait(timeout):
            raise TimeoutError(f"no stream from {self.url}: {self.error}")
        return self

    def _run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=httpx.Timeout(10, read=None)) as response:
                response.raise_for_status()
                block: list[str] = []
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("retry:"):
                        self.connected.set()
                    if line:
                        block.append(line)
                        continue
                    fields = dict(part.split(": ", 1) for part in block if not part.startswith(":") and ": " in part)
                    if "data" in fields:
                        self.events.append(Event(fields.get("event", "message"), orjson.loads(fields["data"]),
                                                 fields.get("id")))
                    block = []
        except BaseException as exc:  # noqa: BLE001 - kept for the test to see
            self.error = exc

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        """Wait until the server ends the stream (TimeoutError if it does not)."""
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the stream from {self.url} is still open after {timeout} s")

    def posts(self) -> list[int]:
        return [e.data["post_id"] for e in self.events if e.event == "post"]

    def deletes(self) -> list[int]:
        return [e.data["post_id"] for e in self.events if e.event == "delete"]

    def last_id(self) -> str | None:
        ids = [e.id for e in self.events if e.id]
        return ids[-1] if ids else None

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.events)} events of {count} from {self.url}: {self.events}")
            time.sleep(0.05)
