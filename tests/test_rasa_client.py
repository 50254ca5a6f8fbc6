"""The Rasa client sets the language slot only when the tracker does not already hold it."""

from __future__ import annotations

import asyncio

import httpx

from bot.rasa_client import RasaClient
from bot.settings import Settings

from fake_rasa import FakeRasaServer


def _slot_calls(rasa: FakeRasaServer) -> int:
    return sum(1 for r in rasa.requests if r.url.path.endswith("/tracker/events"))


def test_language_slot_is_sent_only_when_the_tracker_differs() -> None:
    rasa = FakeRasaServer(token="t")
    rasa.slots = {}
    settings = Settings(rasa_token="t")
    client = RasaClient(settings, transport=httpx.MockTransport(rasa.handler))

    async def turns() -> None:
        await client.handle("c1", "hoi", "nl", {})
        await client.handle("c1", "storing?", "nl", {})  # same language: no slot call
        assert _slot_calls(rasa) == 1
        await client.handle("c1", "hello", "en", {})  # the customer switched
        assert _slot_calls(rasa) == 2
        assert rasa.slots["language"] == "en"
        rasa.slots.clear()  # Rasa restarted with an empty tracker store
        await client.handle("c1", "still down?", "en", {})  # read back: no language any more
        await client.handle("c1", "and now?", "en", {})  # so it is set again
        assert _slot_calls(rasa) == 3
        assert rasa.slots["language"] == "en"
        await client.aclose()

    asyncio.run(turns())
