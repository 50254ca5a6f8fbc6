"""``GET /health``: the database, Rasa's reachability and the loaded model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bot.api.schemas import HealthOut
from bot.rasa_client import DialogueEngine, RasaUnavailable

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(request: Request) -> JSONResponse:
    """``ok`` (200) when the database answers and Rasa has a model loaded, else 503."""
    database: dict[str, Any]
    try:
        with request.app.state.sessions() as session:
            session.execute(text("SELECT 1"))
        database = {"ok": True, "dialect": session.get_bind().dialect.name}
    except SQLAlchemyError as exc:
        database = {"ok": False, "error": str(exc).splitlines()[0]}

    engine: DialogueEngine = request.app.state.dialogue
    rasa: dict[str, Any]
    try:
        status = await engine.status()
        model_file = status.get("model_file")
        rasa = {
            "ok": bool(model_file),
            "model_file": model_file,
            "model_id": status.get("model_id"),
        }
    except RasaUnavailable as exc:
        rasa = {"ok": False, "error": str(exc)}

    ok = database["ok"] and rasa["ok"]
    body = HealthOut(status="ok" if ok else "degraded", database=database, rasa=rasa)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
