"""The agent's turn: a burst of customer messages → model call with tools → commands and one reply."""

import dataclasses
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import Author, InboundMessage, MediaContent, OutboundMessage, StoryContent
from schemas.envelope import Actor, ActorKind, Envelope
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.orders import CreateDraft
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_COMMANDS
from sellmesh.broker import publish
from sellmesh.service import caused_by, derived_id, now
from sellmesh.subscriber import Handled
from services.agent import intent, memory, turn_plan
from services.agent.burst import Answered, Burst, BurstBuffer, PersonTookOver
from services.agent.guardrails import Violation, check_reply, reply_facts, retry_instruction
from services.agent.metrics import BURST_SIZE, GUARDRAIL_HITS, HANDOFFS_REQUESTED, TOOL_REFUSALS, USAGE_NOT_RECORDED
from services.agent.model_call import ModelChoice, Usage, call_model
from services.agent.plan import QuotaSpent, plan_of
from services.agent.prompt import format_money, system_prompt, training_part
from services.agent.quota import QuotaCounter
from services.agent.tools import Turn, handoff, plan, tool_definitions
from services.agent.usage import usage_row, usage_writer
from services.gateway.query import tenant_name_async, tenant_training_async
from services.handoff.query import handed_to_person
from services.orders.query import order_and_catalog_async

log = logging.getLogger(__name__)

TEXT_KINDS = ("text", "quick_reply", "postback", "button_reply", "list_reply")
NON_TEXT_REPLY = "Thanks! I can only read text messages for now. Could you tell me in words what you need?"
COMPLAINT_REPLY = "I'm sorry to hear that. I'm bringing in a person from our team; they'll answer you here shortly."
QUOTA_REPLY = "Thanks for your message! A person from our team will answer you here shortly."
GUARDRAIL_REPLY = "Let me bring in a person from our team to answer that properly. They'll reply here shortly."
MODEL_DOWN_REPLY = "Sorry, I'm having trouble answering right now. A person from our team will reply here shortly."
MAX_TOOL_ROUNDS = 3

Commands = list[tuple[str, Envelope, str]]


def customer_text(message: InboundMessage) -> str | None:
    """What the customer said in words; None for a message with none (a sticker, a bare photo, a location)."""
    content = message.content
    if content.kind in TEXT_KINDS:
        return str(getattr(content, "text", None) or getattr(content, "title", ""))
    # Words that came with something else: a photo's caption, a reply to a story. Told they were not read,
    # the customer would have to write them again.
    if isinstance(content, MediaContent) and content.caption:
        return content.caption
    if isinstance(content, StoryContent) and content.kind == "story_reply" and content.text:
        return content.text
    return None


@dataclasses.dataclass
class Reply:
    text: str
    # System for hand-over and template replies: the handoff they request may already have put the
    # conversation in human mode at the sender, which refuses author=ai.
    author: Author = Author.AI


class Responder:
    def __init__(
        self, *, engine: Engine, redis: Redis, broker: KafkaBroker, buffer: BurstBuffer, choice: ModelChoice
    ) -> None:
        self.quota = QuotaCounter(redis)
        self.usage = usage_writer(engine)
        self.engine = engine
        self.redis = redis
        self.broker = broker
        self.buffer = buffer
        self.choice = choice

    async def on_inbound(self, message: InboundMessage) -> Handled | None:
        """Consumer side: only buffer the message; the scheduler answers the burst once it is quiet."""
        if message.content.kind == "reaction":
            return None
        if not await self.buffer.add(message):
            log.info("inbound message already buffered; skipped")
            return Handled.DUPLICATE
        return None

    async def answer(self, burst: Burst) -> Answered:
        """Answer the burst; returns the exchange to remember (none for a burst without text), which the
        scheduler appends as it finishes the burst (`BurstBuffer.finish`), in the same Redis step."""
        last = burst.last
        state = burst.state
        if state is None:  # a burst not claimed from the buffer
            state = await memory.turn_state(self.redis, last.tenant_id, last.conversation_id)
        # First of two locks: while a person owns the conversation the agent stays quiet. What it leaves is the
        # AI's again at the handback if the person left it unanswered (`handback.py`).
        if state.mode == "human":
            await memory.leave_to_person(self.redis, burst.messages)
            return Answered()
        messages = await self._left_to_the_ai(burst.messages, state)
        if not messages:
            # Messages a person had before them when they handed the conversation back, read here only now (this
            # worker lagged or restarted): the person answered them, or chose not to. Answering again doubles.
            log.info("burst was the person's to answer; skipped", extra={"messages": len(burst.messages)})
            return Answered()
        # A retried turn publishes what its first run planned (`turn_plan.py`), not a new plan.
        plan = burst.plan
        if plan is None:
            try:
                plan = await self.buffer.keep_plan(burst, await self._plan(burst, messages, state))
            except PersonTookOver:
                # The person now owns the conversation: proposals or words of the AI would be made behind them.
                log.info("a person took the conversation while the turn planned; nothing published")
                await memory.leave_to_person(self.redis, messages)
                return Answered()
        drafts = [command for _, command, _ in plan.messages if isinstance(command, CreateDraft)]
        for draft in drafts:
            # Before the draft goes out: orders may refuse a change to it at once, and the refusal is told here.
            await memory.remember_order_conversation(self.redis, last, draft.order_id)
        for topic, message, key in plan.messages:
            await publish(self.broker, topic, message, key=key)
        for draft in drafts:
            # Only once its CreateDraft is out: a draft proposed in a turn whose proposals were dropped (the
            # guardrails, a failed model) would otherwise stay the current order without ever existing.
            await memory.set_current_order(self.redis, last.tenant_id, last.conversation_id, draft.order_id)
        return Answered(plan.remember, None if plan.taken == burst.taken else plan.taken)

    async def _left_to_the_ai(
        self, messages: Sequence[InboundMessage], state: memory.TurnState
    ) -> list[InboundMessage]:
        """The burst's messages that are the AI's to answer: after a handback, not those the person had."""
        if not state.handed_back:
            return list(messages)
        last = messages[-1]
        theirs = await handed_to_person(
            self.redis, last.tenant_id, last.conversation_id, [m.event_id for m in messages]
        )
        return [m for m in messages if m.event_id not in theirs]

    async def _plan(self, burst: Burst, fresh: Sequence[InboundMessage], state: memory.TurnState) -> turn_plan.TurnPlan:
        """What this turn publishes (its commands, then the reply) and adds to the conversation's memory."""
        last = burst.last
        BURST_SIZE.observe(len(burst.messages))
        texts = [t for t in (customer_text(m) for m in fresh) if t]
        commands: Commands = []
        if not texts:
            reply = Reply(NON_TEXT_REPLY)
        else:
            reply = await self._reply(last, "\n".join(texts), commands, state)
        messages = [*commands, (CHANNEL_OUTBOUND, self._outbound(last, reply), last.conversation_id)]
        exchange = [{"role": "user", "content": "\n".join(texts)}, {"role": "assistant", "content": reply.text}]
        head, tail = str(burst.messages[0].event_id), str(last.event_id)
        return turn_plan.TurnPlan(messages, exchange if texts else [], burst.taken, head, tail)

    async def _reply(self, message: InboundMessage, text: str, commands: Commands, state: memory.TurnState) -> Reply:
        turn = await self._turn(message, state.order_id)
        if intent.is_complaint(text):
            return self._hand_over(turn, HandoffReason.COMPLAINT_OR_REFUND, COMPLAINT_REPLY, commands)
        training = await tenant_training_async(self.engine, message.tenant_id)
        plan_ = plan_of(training)
        if isinstance(await self.quota.take(message.tenant_id, plan_, now()), QuotaSpent):
            return self._hand_over(turn, HandoffReason.QUOTA, QUOTA_REPLY, commands)
        try:
            reply = await self._converse(message, text, turn, training, plan_.name, commands, state)
        except Exception:
            log.exception("model call failed after retries and fallbacks")
            commands.clear()  # nothing half-decided goes out
            return self._hand_over(turn, HandoffReason.LOW_CONFIDENCE, MODEL_DOWN_REPLY, commands)
        if reply is None:
            commands.clear()
            return self._hand_over(turn, HandoffReason.GUARDRAIL, GUARDRAIL_REPLY, commands)
        return reply

    def _hand_over(self, turn: Turn, reason: HandoffReason, text: str, commands: Commands) -> Reply:
        commands.extend(handoff(turn, reason).commands)
        HANDOFFS_REQUESTED.labels(reason.value).inc()
        return Reply(text, Author.SYSTEM)

    async def _converse(
        self,
        message: InboundMessage,
        text: str,
        turn: Turn,
        training: dict[str, Any],
        tier: str,
        commands: Commands,
        state: memory.TurnState,
    ) -> Reply | None:
        """The model's reply after its tool calls, or None when it failed the guardrails twice."""
        choice = dataclasses.replace(self.choice, model=str(training.get("model") or self.choice.model))
        system = await self._system(message.tenant_id, turn, training)
        summary = state.summary
        earlier = [{"role": "system", "content": f"Earlier in this conversation: {summary}"}] if summary else []
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            *earlier,
            *state.recent,
            {"role": "user", "content": text},
        ]
        usage = Usage()
        try:
            return await self._model_turn(message, choice, messages, turn, system, training, tier, commands, usage)
        finally:
            if usage.calls:
                await self._record_usage(usage_row(message, choice.model, usage))

    async def _record_usage(self, row: dict[str, Any]) -> None:
        """Accounting, after the answer is made: a database blip here must not throw away a good answer (the
        caller would take it for a failed model and hand the customer to a person)."""
        try:
            await self.usage.insert(row)
        except Exception:
            USAGE_NOT_RECORDED.inc()
            log.exception("model usage of a turn not recorded")

    async def give_up(self, burst: Burst) -> None:
        """A turn that failed again and again (`BurstScheduler`): a person is asked for and the customer told so.
        Ids derive from the burst's last message, so a repeat publishes the same messages, and a reply an earlier
        run already published (the same id as this one's) is sent once."""
        last = burst.last
        request = RequestHandoff(
            **caused_by(last, "gave-up", producer="agent"),
            conversation_id=last.conversation_id,
            actor=Actor(kind=ActorKind.AI),
            reason=HandoffReason.LOW_CONFIDENCE,
            channel=last.channel,
            channel_account_id=last.channel_account_id,
            customer_id=last.customer_id,
            note="the AI failed to answer this conversation several times",
        )
        await publish(self.broker, HANDOFF_COMMANDS, request, key=last.conversation_id)
        await publish(
            self.broker,
            CHANNEL_OUTBOUND,
            self._outbound(last, Reply(MODEL_DOWN_REPLY, Author.SYSTEM)),
            key=last.conversation_id,
        )
        HANDOFFS_REQUESTED.labels(HandoffReason.LOW_CONFIDENCE.value).inc()

    async def _model_turn(
        self,
        message: InboundMessage,
        choice: ModelChoice,
        messages: list[dict[str, Any]],
        turn: Turn,
        system: str,
        training: dict[str, Any],
        tier: str,
        commands: Commands,
        usage: Usage,
    ) -> Reply | None:
        checked = 0
        for _ in range(MAX_TOOL_ROUNDS + 1):
            response = await call_model(choice, messages=messages, tools=tool_definitions(), tier=tier, usage=usage)
            choice_message = response.choices[0].message
            if not choice_message.tool_calls:
                content = str(choice_message.content or "")
                violations = self._violations(content, turn, system, training)
                if not violations:
                    handing_over = any(topic == HANDOFF_COMMANDS for topic, _, _ in commands)
                    return Reply(content, Author.SYSTEM if handing_over else Author.AI)
                checked += 1
                if checked > 1:
                    return None
                # One retry, told why; a second failure hands over rather than guessing again.
                messages.append({"role": "assistant", "content": content})
                messages.append({"role": "user", "content": retry_instruction(violations)})
                continue
            calls = [call.model_dump() for call in choice_message.tool_calls]
            messages.append({"role": "assistant", "content": choice_message.content, "tool_calls": calls})
            for call in choice_message.tool_calls:
                outcome = plan(call.function.name or "", call.function.arguments or "{}", turn)
                if outcome.refused:
                    TOOL_REFUSALS.labels(outcome.refused).inc()
                    log.warning("tool call refused", extra={"tool": call.function.name, "reason": outcome.refused})
                commands.extend(outcome.commands)
                for _, command, _ in outcome.commands:
                    if isinstance(command, RequestHandoff):  # the customer asked for a person
                        HANDOFFS_REQUESTED.labels(command.reason.value).inc()
                if outcome.order_id is not None and outcome.order_id != turn.order_id:
                    # Later calls in this turn edit the draft just proposed, not a second new one. It becomes the
                    # conversation's current order once its CreateDraft is published (`answer`).
                    turn = dataclasses.replace(turn, order_id=outcome.order_id, order=None)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(outcome.result)})
        # The AI's own words, so the sender's lock holds it back if a person took the conversation meanwhile.
        return Reply("Sorry, I got confused. A person from our team can help if you ask for one.", Author.AI)

    @staticmethod
    def _violations(content: str, turn: Turn, system: str, training: dict[str, Any]) -> list[Violation]:
        facts = reply_facts(
            catalog=turn.catalog.values(), order=turn.order, system_prompt=system, trusted_text=training_part(training)
        )
        violations = check_reply(content, facts=facts)
        for violation in violations:
            GUARDRAIL_HITS.labels(violation.kind).inc()
        if violations:
            log.warning("reply stopped by guardrails", extra={"violations": [v.kind for v in violations]})
        return violations

    async def _turn(self, message: InboundMessage, order_id: uuid.UUID | None) -> Turn:
        order, products = await order_and_catalog_async(self.engine, message.tenant_id, order_id)
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

    async def _system(self, tenant_id: uuid.UUID, turn: Turn, training: dict[str, Any]) -> str:
        business = await tenant_name_async(self.engine, tenant_id) or "our shop"
        return system_prompt(
            business=business, training=training, products=list(turn.catalog.values()), order=turn.order
        )

    @staticmethod
    def _outbound(message: InboundMessage, reply: Reply) -> OutboundMessage:
        return OutboundMessage(
            **caused_by(message, "reply", producer="agent"),
            conversation_id=message.conversation_id,
            channel=message.channel,
            channel_account_id=message.channel_account_id,
            customer_id=message.customer_id,
            author=reply.author,
            text=reply.text[:4096] or "Sorry, I have no answer for that.",
        )
