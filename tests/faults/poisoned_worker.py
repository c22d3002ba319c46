"""`fanout worker` with one handler bug: it fails on every post whose body contains POISON (a valid event,
not a malformed one). Started by tests/faults/test_poison.py in place of the real worker."""

from __future__ import annotations

from deploy.stack import on_stack
from fanout.core.events import Event, PostCreated
from fanout.settings import Settings
from fanout.write.pipeline import Pipeline
from services import worker

POISON = "POISON"


class PoisonedPipeline(Pipeline):
    async def handle(self, event: Event) -> None:
        if isinstance(event, PostCreated) and POISON in event.body:
            raise RuntimeError(f"handler bug: cannot deliver post {event.post_id}")
        await super().handle(event)


if __name__ == "__main__":
    worker.run(on_stack(Settings.load()), pipeline=PoisonedPipeline)
