"""One customer across channels, for agents: the history on every channel, the update channel.

- ``GET /api/v1/customers/{customer_id}/history``: the messages of all of the customer's
  conversations (Telegram, SMS, WhatsApp, voice, ...) in time order, each with its channel.
- ``GET /api/v1/conversations/{conversation_id}/history``: the same, for the customer holding
  that conversation (only its own messages when no customer is tied to it).
- ``PUT /api/v1/customers/{customer_id}/preferred-channel``: where notifications go (an agent
  setting it for a customer on the phone); 409 when the customer is not known on that channel.

For the agent console (a logged-in agent, supervisor or admin; the CSRF token on the PUT) and
machine clients with the operations API key (``X-API-Key``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from bot.accounts import require_api_key_or_role
from bot.api.customer_schemas import CustomerHistoryOut, PreferredChannelIn
from bot.api.deps import app_sessions
from bot.api.schemas import ErrorOut
from bot.customers.history import CustomerHistory, conversation_history, customer_history
from bot.customers.identities import ChannelNotLinked, UnknownCustomer, set_preferred_channel

router = APIRouter(prefix="/api/v1", tags=["customers"])

#: Agents look customers up mid-call; supervisors and admins may too.
AgentOrKey = Depends(require_api_key_or_role("agent", "supervisor"))

CustomerId = Annotated[int, Path(ge=1, description="The customer's id.")]
ConversationId = Annotated[
    str,
    Path(min_length=1, max_length=128, description="A conversation id, e.g. telegram:4242."),
]
Limit = Annotated[
    int, Query(ge=1, le=1000, description="At most this many messages: the latest ones.")
]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
}


def _out(history: CustomerHistory) -> CustomerHistoryOut:
    return CustomerHistoryOut.model_validate(asdict(history))


@router.get(
    "/customers/{customer_id}/history",
    response_model=CustomerHistoryOut,
    dependencies=[AgentOrKey],
    responses=_RESPONSES,
)
def get_customer_history(
    customer_id: CustomerId, request: Request, limit: Limit = 500
) -> CustomerHistoryOut:
    """The customer's messages on all their channels, oldest first, each with its channel."""
    with app_sessions(request)() as session:
        history = customer_history(session, customer_id, limit=limit)
    if history is None:
        raise HTTPException(status_code=404, detail=f"unknown customer {customer_id}")
    return _out(history)


@router.get(
    "/conversations/{conversation_id}/history",
    response_model=CustomerHistoryOut,
    dependencies=[AgentOrKey],
    responses=_RESPONSES,
)
def get_conversation_history(
    conversation_id: ConversationId, request: Request, limit: Limit = 500
) -> CustomerHistoryOut:
    """The history across channels of the customer holding this conversation."""
    with app_sessions(request)() as session:
        history = conversation_history(session, conversation_id, limit=limit)
    if history is None:
        raise HTTPException(status_code=404, detail=f"unknown conversation {conversation_id!r}")
    return _out(history)


@router.put(
    "/customers/{customer_id}/preferred-channel",
    response_model=CustomerHistoryOut,
    dependencies=[AgentOrKey],
    responses={**_RESPONSES, 409: {"model": ErrorOut}},
)
def put_preferred_channel(
    customer_id: CustomerId, body: PreferredChannelIn, request: Request, limit: Limit = 50
) -> CustomerHistoryOut:
    """Send the customer's notifications to ``channel`` (null: where they subscribed).

    Answers with the customer and their latest ``limit`` messages.
    """
    with app_sessions(request)() as session, session.begin():
        try:
            set_preferred_channel(session, customer_id, body.channel)
        except ChannelNotLinked as exc:
            raise HTTPException(
                status_code=409, detail=f"the customer is not known on {exc.channel}"
            ) from exc
        except UnknownCustomer as exc:
            raise HTTPException(status_code=404, detail=f"unknown customer {customer_id}") from exc
        history = customer_history(session, customer_id, limit=limit)
    assert history is not None
    return _out(history)
