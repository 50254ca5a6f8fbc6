"""``/console``: the agent console page (agents, supervisors and admins).

The page is a shell rendered on the server; its script talks to the JSON API: the turn
(``POST /api/v1/conversations/{id}/messages``), the promise card
(``GET /api/v1/conversations/{id}/promise``), the history across channels
(``GET /api/v1/conversations/{id}/history``), the handoff queue (``/api/v1/handoffs``) and the
suggestion feedback (``POST /api/v1/suggestions/{id}/feedback``).

``/console?conversation=<id>`` opens that conversation (the CX inbox links to it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from bot.accounts import CurrentUser, page_user
from bot.api.conversations import CONVERSATION_ID_PATTERN
from bot.settings import Settings
from bot.web import render_page

_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
TEMPLATES_DIR = _HERE / "templates"

router = APIRouter(include_in_schema=False)

_CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)


@router.get("/console", response_class=HTMLResponse)
def console(
    request: Request,
    user: Annotated[CurrentUser, Depends(page_user("agent", "supervisor"))],
    conversation: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    """The console; ``conversation`` opens an existing conversation (else a new one starts)."""
    settings: Settings = request.app.state.settings
    # A malformed id (a mangled link) is reported on the page, not as a JSON error: the agent
    # can still work, in a new conversation.
    valid = conversation is not None and len(conversation) <= 128
    valid = valid and _CONVERSATION_ID.match(conversation or "") is not None
    return render_page(
        request,
        "console.html",
        user,
        {
            "conversation_id": conversation if valid else "",
            "bad_conversation": conversation is not None and not valid,
            "promise_poll_ms": int(settings.console_promise_poll_seconds * 1000),
            "handoff_poll_ms": int(settings.console_handoff_poll_seconds * 1000),
            "max_chars": settings.max_message_chars,
        },
    )
