"""The Belofte service's client for the Rasa server (loopback, token-protected HTTP API).

One user turn is two calls: send the message through Rasa's REST channel (which runs the whole
turn, custom actions included), then read the tracker for what NLU understood and which slots the
turn set. The language travels in the message's metadata; ``action_set_language`` (the
``language`` slot's mapping) sets the slot from it inside the turn. Setting it with a separate
``tracker/events`` call before the turn cost a Rasa round trip, and on a conversation's first
message the event landed before the session start, where Rasa's turn did not see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from bot.settings import Language, Settings


class RasaUnavailable(Exception):
    """Rasa could not be reached or did not answer in time."""


@dataclass(frozen=True)
class RasaTurn:
    """What Rasa made of one user message."""

    replies: list[dict[str, Any]]
    intent: dict[str, Any]
    entities: list[dict[str, Any]]
    slots: dict[str, Any]
    #: Slots set by actions during this turn (name -> value), in order.
    slots_set_this_turn: dict[str, Any] = field(default_factory=dict)


class DialogueEngine(Protocol):
    """What the conversation service needs from the dialogue layer."""

    async def handle(
        self, conversation_id: str, text: str, language: Language, metadata: dict[str, Any]
    ) -> RasaTurn:
        """Run one user turn and return Rasa's replies and understanding."""
        ...

    async def status(self) -> dict[str, Any]:
        """Reachability and the loaded model."""
        ...


class RasaClient:
    """:class:`DialogueEngine` backed by a Rasa 3.6 server."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self._token = settings.rasa_api_token()
        self._http = httpx.AsyncClient(
            base_url=settings.rasa_url,
            timeout=httpx.Timeout(settings.rasa_timeout_seconds, connect=2.0),
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        params = {"token": self._token, **kwargs.pop("params", {})}
        try:
            response = await self._http.request(method, path, params=params, **kwargs)
            response.raise_for_status()
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            raise RasaUnavailable(f"{method} {path}: {exc}") from exc
        return response.json() if response.content else None

    async def handle(
        self, conversation_id: str, text: str, language: Language, metadata: dict[str, Any]
    ) -> RasaTurn:
        """Run one turn; raises :class:`RasaUnavailable` if Rasa fails at any step."""
        replies = await self._request(
            "POST",
            "/webhooks/rest/webhook",
            json={
                "sender": conversation_id,
                "message": text,
                "metadata": {**metadata, "language": language},
            },
        )
        tracker = await self._request(
            "GET",
            f"/conversations/{conversation_id}/tracker",
            params={"include_events": "AFTER_RESTART"},
        )
        latest = tracker.get("latest_message") or {}
        return RasaTurn(
            replies=list(replies or []),
            intent=dict(latest.get("intent") or {}),
            entities=list(latest.get("entities") or []),
            slots=dict(tracker.get("slots") or {}),
            slots_set_this_turn=_slots_set_since_last_user_event(tracker.get("events") or []),
        )

    async def status(self) -> dict[str, Any]:
        """Rasa's ``/status`` (model file and id); raises :class:`RasaUnavailable`."""
        status = await self._request("GET", "/status")
        return dict(status or {})


def _slots_set_since_last_user_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    last_user = max((i for i, e in enumerate(events) if e.get("event") == "user"), default=-1)
    return {
        e["name"]: e.get("value")
        for e in events[last_user + 1 :]
        if e.get("event") == "slot" and "name" in e
    }
