"""example_single_tool_call: one weather tool; every rollout is rewarded (the example is about plumbing)."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from ngym.env.resources import ResourcesServer, VerifyRequest, VerifyResponse


class GetWeatherRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    city: str


class GetWeatherResponse(BaseModel):
    city: str
    weather_description: str


class WeatherResourcesServer(ResourcesServer):
    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post("/get_weather")(self.get_weather)
        return app

    async def get_weather(self, body: GetWeatherRequest) -> GetWeatherResponse:
        return GetWeatherResponse(city=body.city, weather_description=f"The weather in {body.city} is cold.")

    async def verify(self, body: VerifyRequest) -> VerifyResponse:
        return VerifyResponse.of(body, reward=1.0)


if __name__ == "__main__":
    WeatherResourcesServer.run_webserver()
