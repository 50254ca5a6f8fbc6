"""A simulated Rasa 3.6 HTTP API for tests of the service (the integration tests use a real one)."""

from __future__ import annotations

import json
from typing import Any

import httpx


class FakeRasaServer:
    """Answers Rasa 3.6's HTTP API for one canned turn, and records what it was sent.

    Used through ``httpx.MockTransport`` so the real :class:`bot.rasa_client.RasaClient` runs;
    the integration tests use a real Rasa.
    """

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.requests: list[httpx.Request] = []
        self.slots: dict[str, Any] = {"language": "nl"}
        self.reply: list[dict[str, Any]] = [{"recipient_id": "x", "text": "Hoi!"}]
        self.turn_events: list[dict[str, Any]] = []
        self.intent: dict[str, Any] = {"name": "greet", "confidence": 0.97}
        #: The metadata of every message sent to the REST channel, in order.
        self.metadata: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        """The mock transport's handler."""
        self.requests.append(request)
        if request.url.params.get("token") != self.token:
            return httpx.Response(401, json={"message": "unauthorized"})
        path = request.url.path
        if path == "/webhooks/rest/webhook":
            body = json.loads(request.content)
            self.metadata.append(body.get("metadata") or {})
            # What the domain's action_set_language does with the message's metadata.
            if body.get("metadata", {}).get("language") in ("nl", "en"):
                self.slots["language"] = body["metadata"]["language"]
            return httpx.Response(200, json=self.reply)
        if path.endswith("/tracker"):
            events = [{"event": "user", "text": "..."}, *self.turn_events]
            latest = {"intent": self.intent, "entities": [], "text": "..."}
            body = {"slots": self.slots, "latest_message": latest, "events": events}
            return httpx.Response(200, json=body)
        if path == "/status":
            return httpx.Response(200, json={"model_file": "belofte.tar.gz", "model_id": "abc"})
        return httpx.Response(404)
