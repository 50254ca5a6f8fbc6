"""Test doubles and helpers of the channel tests (fixtures are in this folder's conftest.py).

``FakeBotApi``    a Telegram Bot API on 127.0.0.1 (uvicorn in a thread) whose answers are PTB's
                  own types serialised with ``to_dict()``; records every call.
``FakeTwilioApi`` an in-process twilio ``AsyncHttpClient`` answering like Twilio's REST API
                  (for the webhook tests; the outbound tests use Prism).
``RecordingTwilioHttpClient`` the service's real HTTP client (to Prism), recording requests.
``start_app``     the Belofte app on these fakes, driven through FastAPI's TestClient.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from telegram import Chat, InlineKeyboardMarkup, Message, User
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse

from bot.app import create_app
from bot.channels.gateway import ChannelGateway
from bot.channels.twilio import RoutedTwilioHttpClient
from bot.rasa_client import RasaClient
from bot.settings import Settings
from bot.storage.db import make_sessionmaker

from fake_rasa import FakeRasaServer

BOT_TOKEN = "123456789:AAFakeTokenForBelofteTests_abcdefghij"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token"
PUBLIC_BASE = "https://belofte.example.nl"


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class LoopbackServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        wait_until(lambda: self._server.started, timeout=15)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class FakeBotApi:
    """The Telegram Bot API methods Belofte uses, answered with PTB's own types.

    ``calls`` holds (method, parameters) in order; parameters are decoded from the form PTB
    posts (JSON values for everything but plain strings).
    """

    def __init__(self, token: str = BOT_TOKEN) -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: Where PTB reaches this API (set once it is served, see ``LoopbackServer``).
        self.base_url = ""
        self.me = User(
            id=int(token.split(":")[0]),
            is_bot=True,
            first_name="Belofte",
            username="belofte_test_bot",
        )
        self._message_id = 1000
        #: Chats that blocked the bot: sending to them answers 403 like the real Bot API.
        self.blocked: set[int] = set()
        self.app = Starlette(
            routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])]
        )

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        """The parameters of every call of ``method`` so far."""
        return [params for name, params in list(self.calls) if name == method]

    async def _endpoint(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return JSONResponse(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401
            )
        method = str(request.path_params["method"])
        params = self._decode((await request.body()).decode("utf-8"))
        self.calls.append((method, params))
        if method == "sendMessage" and int(params.get("chat_id", 0)) in self.blocked:
            return JSONResponse(
                {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user",
                },
                status_code=403,
            )
        result = self._result(method, params)
        if result is None:
            return JSONResponse(
                {"ok": False, "error_code": 404, "description": "Not Found: method not found"},
                status_code=404,
            )
        return JSONResponse({"ok": True, "result": result})

    @staticmethod
    def _decode(body: str) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in parse_qsl(body, keep_blank_values=True):
            if key == "text" or key == "url" or key == "secret_token" or key == "callback_query_id":
                params[key] = value
                continue
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
        return params

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return self.me.to_dict()
        if method == "sendMessage":
            self._message_id += 1
            markup = params.get("reply_markup")
            message = Message(
                message_id=self._message_id,
                date=datetime.now(UTC),
                chat=Chat(id=int(params["chat_id"]), type=Chat.PRIVATE),
                from_user=self.me,
                text=str(params["text"]),
                # A sent message carries only an inline keyboard; a reply keyboard is the chat's.
                reply_markup=(
                    InlineKeyboardMarkup.de_json(markup)
                    if isinstance(markup, dict) and "inline_keyboard" in markup
                    else None
                ),
            )
            return message.to_dict()
        if method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
            return True
        return None


class FakeTwilioApi(AsyncHttpClient):
    """An in-process stand-in for Twilio's REST API: records requests, creates messages.

    ``gate``, when set, holds every request until it is set (to show webhooks do not wait for
    the REST call). ``fail_with`` answers the next requests with that Twilio error instead.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger("tests.fake_twilio"), True, None)
        self.requests: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.fail_with: tuple[int, int, str] | None = None
        self.closed = False

    def messages(self) -> list[dict[str, Any]]:
        """The form data of every message created so far."""
        return [r["data"] for r in list(self.requests) if r["url"].endswith("/Messages.json")]

    async def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if self.gate is not None:
            await self.gate.wait()
        form = {k: str(v) for k, v in (data or {}).items()}
        self.requests.append({"method": method, "url": uri, "data": form, "auth": auth})
        if self.fail_with is not None:
            status, code, message = self.fail_with
            body = {"code": code, "message": message, "status": status, "more_info": ""}
            return TwilioResponse(status, json.dumps(body))
        payload = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": ACCOUNT_SID,
            "status": "queued",
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "num_segments": "1",
            "direction": "outbound-api",
        }
        return TwilioResponse(201, json.dumps(payload))

    async def close(self) -> None:
        self.closed = True


class RecordingTwilioHttpClient(RoutedTwilioHttpClient):
    """The real HTTP client of the service (to Prism), recording each request and status."""

    def __init__(self, api_base_url: str) -> None:
        super().__init__(api_base_url, timeout=30)
        self.requests: list[dict[str, Any]] = []

    async def request(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await super().request(method, url, **kwargs)
        sent = self._test_only_last_request
        self.requests.append(
            {
                "method": method,
                "url": sent.url,
                "data": {k: str(v) for k, v in (kwargs.get("data") or {}).items()},
                "authorization": (sent.headers or {}).get("Authorization"),
                "status": response.status_code,
                "body": response.text,
            }
        )
        return response


def channel_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings with a private home, the fake Rasa token, Twilio and a public base URL."""
    values: dict[str, Any] = {
        "home": tmp_path,
        "rasa_token": "test-token",
        "rasa_port": free_port(),
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_sms_from": "+3197010000001",
        "twilio_whatsapp_from": "whatsapp:+3197010000002",
        "public_base_url": PUBLIC_BASE,
    }
    values.update(overrides)
    return Settings(**values)


class ChannelApp:
    """The Belofte app under test, with its fakes, driven through FastAPI's TestClient."""

    def __init__(self, client: TestClient, rasa: FakeRasaServer, engine: Engine) -> None:
        self.client = client
        self.rasa = rasa
        self.sessions = make_sessionmaker(engine)

    @property
    def gateway(self) -> ChannelGateway:
        """The app's channel gateway."""
        gateway: ChannelGateway = self.client.app.state.channels  # type: ignore[attr-defined]
        return gateway

    def drain(self) -> None:
        """Wait until the work the webhooks left behind is done."""
        self.client.portal.call(self.gateway.drain)  # type: ignore[union-attr]

    def run(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run a coroutine function in the app's event loop and return its result."""
        return self.client.portal.call(work)  # type: ignore[union-attr]


def start_app(
    settings: Settings,
    engine: Engine,
    rasa: FakeRasaServer,
    twilio_http_client: Callable[[], AsyncHttpClient] | None = None,
) -> Iterator[ChannelApp]:
    """Create the app on ``settings`` and the fakes, run its lifespan, yield it."""
    sessions = make_sessionmaker(engine)
    dialogue = RasaClient(settings, transport=httpx.MockTransport(rasa.handler))
    gateway = ChannelGateway(settings, sessions, twilio_http_client=twilio_http_client)
    app = create_app(settings, dialogue=dialogue, sessions=sessions, channels=gateway)
    with TestClient(app) as client:
        yield ChannelApp(client, rasa, engine)
