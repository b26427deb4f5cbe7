"""example_single_tool_call: one weather tool; every rollout is rewarded (the example is about plumbing)."""

from __future__ import annotations

from pydantic import BaseModel

from ngym.env import Environment, NoState, Verdict, tool
from ngym.wire.responses import Response


class NoTask(BaseModel):
    """The rows carry no task fields."""


class GetWeatherResponse(BaseModel):
    city: str
    weather_description: str


class WeatherResourcesServer(Environment[NoTask, NoState]):
    @tool
    async def get_weather(self, city: str) -> GetWeatherResponse:
        """Get the current weather in a city.

        Args:
            city: The city, e.g. Paris.
        """
        return GetWeatherResponse(city=city, weather_description=f"The weather in {city} is cold.")

    async def verify(self, response: Response) -> Verdict:
        return Verdict(reward=1.0)


if __name__ == "__main__":
    WeatherResourcesServer.run_webserver()
