"""The agent's handler: one inbound message → model call with tools → commands and one reply."""

import dataclasses
import json
import logging
import uuid
from typing import Any

import litellm
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import Author, InboundMessage, OutboundMessage
from schemas.envelope import Envelope
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_COMMANDS
from sellmesh.broker import publish
from sellmesh.db import in_thread
from sellmesh.service import derived_id, now
from services.agent import memory
from services.agent.prompt import format_money, system_prompt
from services.agent.tools import Turn, plan, tool_definitions
from services.gateway.query import tenant_name, tenant_training
from services.handoff.query import conversation_mode
from services.orders.query import get_order, list_products

log = logging.getLogger(__name__)

TEXT_KINDS = ("text", "quick_reply", "postback", "button_reply", "list_reply")
NON_TEXT_REPLY = "Thanks! I can only read text messages for now. Could you tell me in words what you need?"
MAX_TOOL_ROUNDS = 3


def customer_text(message: InboundMessage) -> str | None:
    content = message.content
    if content.kind not in TEXT_KINDS:
        return None
    return str(getattr(content, "text", None) or getattr(content, "title", ""))


class Responder:
    def __init__(
        self, *, engine: Engine, redis: Redis, broker: KafkaBroker, model: str, fallbacks: list[str], timeout: float
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.broker = broker
        self.model = model
        self.fallbacks = fallbacks
        self.timeout = timeout

    async def on_inbound(self, message: InboundMessage) -> None:
        # First of two locks: while a person owns the conversation the agent stays quiet.
        if await conversation_mode(self.redis, message.tenant_id, message.conversation_id) == "human":
            return
        if message.content.kind == "reaction":
            return
        text = customer_text(message)
        commands: list[tuple[str, Envelope, str]] = []
        reply = NON_TEXT_REPLY if text is None else await self._converse(message, text, commands)
        for topic, command, key in commands:
            await publish(self.broker, topic, command, key=key)
        # The turn that hands over is the AI's last word: sent as a system notice, because the
        # handoff it requested may already have put the conversation in human mode at the sender.
        handing_over = any(topic == HANDOFF_COMMANDS for topic, _, _ in commands)
        author = Author.SYSTEM if handing_over else Author.AI
        await publish(
            self.broker, CHANNEL_OUTBOUND, self._outbound(message, reply, author), key=message.conversation_id
        )
        if text is not None:
            await memory.remember(
                self.redis,
                message.tenant_id,
                message.conversation_id,
                {"role": "user", "content": text},
                {"role": "assistant", "content": reply},
            )

    async def _converse(self, message: InboundMessage, text: str, commands: list[tuple[str, Envelope, str]]) -> str:
        turn = await self._turn(message)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": await self._system(message.tenant_id, turn)},
            *await memory.recent_turns(self.redis, message.tenant_id, message.conversation_id),
            {"role": "user", "content": text},
        ]
        for _ in range(MAX_TOOL_ROUNDS):
            response = await litellm.acompletion(
                model=self.model,
                messages=messages,
                tools=tool_definitions(),
                timeout=self.timeout,
                fallbacks=self.fallbacks or None,
            )
            choice = response.choices[0].message
            if not choice.tool_calls:
                return str(choice.content or "")
            messages.append(
                {
                    "role": "assistant",
                    "content": choice.content,
                    "tool_calls": [call.model_dump() for call in choice.tool_calls],
                }
            )
            for call in choice.tool_calls:
                outcome = plan(call.function.name or "", call.function.arguments or "{}", turn)
                commands.extend(outcome.commands)
                if outcome.order_id is not None and outcome.order_id != turn.order_id:
                    await memory.set_current_order(
                        self.redis, message.tenant_id, message.conversation_id, outcome.order_id
                    )
                    await memory.remember_order_conversation(self.redis, message, outcome.order_id)
                    # Later calls in this turn edit the draft just proposed, not a second new one.
                    turn = dataclasses.replace(turn, order_id=outcome.order_id, order=None)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(outcome.result)})
        return "Sorry, I got confused. A person from our team can help if you ask for one."

    async def _turn(self, message: InboundMessage) -> Turn:
        order_id = await memory.current_order_id(self.redis, message.tenant_id, message.conversation_id)
        order = await in_thread(get_order, self.engine, message.tenant_id, order_id) if order_id else None
        products = await in_thread(list_products, self.engine, message.tenant_id)
        catalog = {
            p.sku: {
                "sku": p.sku,
                "name": p.name,
                "description": p.description,
                "price": format_money(p.price),
                "stock": p.stock,
            }
            for p in products
        }
        counter = iter(range(1_000))

        def new_id(tag: str) -> uuid.UUID:
            # Derived from the inbound message: a redelivered message proposes the same command ids.
            return derived_id(message.event_id, tag, next(counter))

        return Turn(
            tenant_id=message.tenant_id,
            correlation_id=message.correlation_id,
            causation_id=message.event_id,
            conversation_id=message.conversation_id,
            channel=message.channel,
            channel_account_id=message.channel_account_id,
            customer_id=message.customer_id,
            now=now(),
            order_id=order_id,
            order=order,
            catalog=catalog,
            new_id=new_id,
        )

    async def _system(self, tenant_id: uuid.UUID, turn: Turn) -> str:
        business = await in_thread(tenant_name, self.engine, tenant_id) or "our shop"
        training = await in_thread(tenant_training, self.engine, tenant_id)
        return system_prompt(
            business=business, training=training, products=list(turn.catalog.values()), order=turn.order
        )

    @staticmethod
    def _outbound(message: InboundMessage, text: str, author: Author) -> OutboundMessage:
        return OutboundMessage(
            event_id=derived_id(message.event_id, "reply"),
            tenant_id=message.tenant_id,
            correlation_id=message.correlation_id,
            causation_id=message.event_id,
            occurred_at=now(),
            producer="agent",
            conversation_id=message.conversation_id,
            channel=message.channel,
            channel_account_id=message.channel_account_id,
            customer_id=message.customer_id,
            author=author,
            text=text[:4096] or "Sorry, I have no answer for that.",
        )
