"""The Rasa action server, inside the Belofte service.

rasa-sdk's :class:`~rasa_sdk.executor.ActionExecutor` runs the custom actions; this router gives
it the same HTTP contract as rasa-sdk's own Sanic endpoint (``POST /webhook``, ``GET /actions``),
so Rasa's ``action_endpoint`` points here and actions share the service's database and caches.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import (
    ActionExecutionRejection,
    ActionMissingDomainException,
    ActionNotFoundException,
)

logger = logging.getLogger(__name__)


def build_router(executor: ActionExecutor) -> APIRouter:
    """Routes ``/webhook`` and ``/actions`` for ``executor``."""
    router = APIRouter(tags=["rasa action server"], include_in_schema=False)

    @router.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        if request.headers.get("content-encoding") == "deflate":
            body = zlib.decompress(body)
        try:
            action_call: Any = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"error": "Invalid body request"}, status_code=400)
        if not isinstance(action_call, dict):
            return JSONResponse({"error": "Invalid body request"}, status_code=400)
        if "domain" not in action_call and "domain_digest" not in action_call:
            # Rasa 3.6's selective domain sends the domain only to the actions that declare
            # `send_domain` in domain.yml, and no digest; newer rasa-sdk executors refuse a call
            # with neither. The other actions do not read the domain.
            action_call["domain"] = {}
        try:
            result = await executor.run(action_call)
        except ActionExecutionRejection as exc:
            return JSONResponse(
                {"error": exc.message, "action_name": exc.action_name}, status_code=400
            )
        except ActionNotFoundException as exc:
            logger.error("Rasa asked for an unknown action: %s", exc.action_name)
            return JSONResponse(
                {"error": exc.message, "action_name": exc.action_name}, status_code=404
            )
        except ActionMissingDomainException as exc:
            return JSONResponse(
                {"error": exc.message, "action_name": exc.action_name}, status_code=449
            )
        return JSONResponse(result.model_dump() if result else None)

    @router.get("/actions")
    async def actions() -> list[dict[str, str]]:
        return [a.model_dump() for a in executor.list_actions()]

    return router
