"""``/console``: the agent console page."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=_HERE / "templates")
STATIC_DIR = _HERE / "static"

router = APIRouter(include_in_schema=False)


@router.get("/console", response_class=HTMLResponse)
async def console(request: Request) -> HTMLResponse:
    """A chat with the assistant, as an agent or a customer would hold it."""
    return templates.TemplateResponse(request, "console.html", {"title": "Belofte console"})
