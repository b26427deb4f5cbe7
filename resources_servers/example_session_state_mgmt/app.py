"""example_session_state_mgmt: a counter per episode. The reward checks the server-side state at
verify time (1.0 iff the episode's counter equals ``expected_count``), not the model's words."""

from __future__ import annotations

from pydantic import BaseModel

from ngym.env import Environment, Verdict, tool
from ngym.wire.responses import Response


class CounterTask(BaseModel):
    initial_count: int = 0
    expected_count: int


class Counter(BaseModel):
    count: int = 0
    seeded: bool = False


class CounterResourcesServer(Environment[CounterTask, Counter]):
    async def seed(self) -> None:
        self.state.count = self.task.initial_count
        self.state.seeded = True

    @tool
    async def increment_counter(self, count: int) -> dict[str, bool]:
        """Add to the counter.

        Args:
            count: How much to add.
        """
        self.state.count += count
        return {"success": True}

    @tool
    async def get_counter_value(self) -> dict[str, int]:
        """Get the counter's current value."""
        return {"count": self.state.count}

    async def verify(self, response: Response) -> Verdict:
        return Verdict(reward=float(self.state.seeded and self.state.count == self.task.expected_count))


if __name__ == "__main__":
    CounterResourcesServer.run_webserver()
