"""The steps every chat request takes between its decoded body and its exchange, whatever the ingress.

``Intake.check`` is instant: it notes the request for the access line, refuses what the gateway
cannot do, resolves the model to a plan and reads the conversation id. ``Intake.admit`` may take
seconds: it offers the MCP tools asked for (their servers may be asked now), joins the conversation
(which may wait for a turn in flight) or reads the stored responses a Responses request continues.
It runs while the client's disconnect is watched, so a client that leaves meanwhile cancels it: its
turn never reaches the upstream and nothing is stored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

import msgspec
from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send

from app.chat.answering import Ticket
from app.chat.exchange import Exchange
from app.chat.outlets import SERVER_SEND_KEY, HttpOutlet, Outlet
from app.conversations.answers import Keeper
from app.conversations.database import DatabaseError
from app.conversations.responses import Chain, ResponseNotFoundError, StoredResponses
from app.conversations.turns import Conversations, Turn, store_unavailable
from app.dialects.base import Dialect
from app.errors import REQUEST_ID_KEY, ApiError
from app.http.access import ACCESS_KEY, AccessRecord
from app.http.auth import owner_of
from app.ops.tracing import TRACING, call_outcome, trace_context
from app.services import Services
from app.tools.loop import ToolLoop
from app.tools.registry import McpRegistry, offer_tools
from providers.base import Original
from providers.request import ChatRequest, McpTools, estimate_prompt_tokens, message_role, message_text
from providers.router import Plan

MODEL_LOG_LIMIT = 200  # model names are the client's own text: bound what of them reaches the log
CONVERSATION_HEADER = "x-conversation-id"


class Claim(msgspec.Struct):
    """A request that passed the instant checks, with the plan that will serve it."""

    chat: ChatRequest
    dialect: Dialect
    plan: Plan
    record: AccessRecord
    conversation_id: str | None
    owner: str
    original: Original | None = None  # the request as it came, for deployments that speak its dialect
    untranslatable: ApiError | None = None  # what of it the gateway cannot translate for the others
    chain: Chain | None = None  # a Responses request: the stored response it continues, and whether to store
    trace: Mapping[str, str] = {}  # the client's traceparent and tracestate


class InFlight:
    """One chat in flight: while it is admitted, its task; once it runs, its exchange."""

    def __init__(self, record: AccessRecord) -> None:
        self.record = record
        self.stage = "admission"  # where admission stands, for the access line of a client that left
        self.task: asyncio.Task[None] | None = None
        self.exchange: Exchange | None = None
        self.left = False

    def cancel(self) -> None:
        if self.exchange is not None:
            self.exchange.cancel()
        elif self.task is not None and not self.left:
            self.left = True
            self.record.status, self.record.cancelled = 499, self.stage
            self.task.cancel()


class Intake:
    def __init__(
        self, services: Services, conversations: Conversations, registry: McpRegistry, responses: StoredResponses
    ):
        self.services = services
        self.conversations = conversations
        self.registry = registry
        self.responses = responses

    def check(
        self,
        chat: ChatRequest,
        dialect: Dialect,
        record: AccessRecord,
        owner: str,
        conversation_header: str | None,
        original: Original | None = None,
        untranslatable: ApiError | None = None,
        chain: Chain | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> Claim:
        note_request(record, chat, self.services.log_content)
        check_supported(chat)
        plan = self.services.router.resolve(chat.model)
        conversation_id = conversation_id_of(chat, conversation_header)
        if chain is not None and chain.previous_id is not None and conversation_id is not None:
            raise ApiError(
                400,
                "previous_response_id and conversation_id both say which history to continue; send one of them.",
                code="invalid_value",
                param="previous_response_id",
            )
        if original is not None and original.verbatim and (conversation_id or uses_tools(chat, plan)):
            original = None  # the gateway changes what goes upstream: the request as it came cannot go
        if untranslatable is not None and not self.speaks(plan, original):
            raise untranslatable
        return Claim(chat, dialect, plan, record, conversation_id, owner, original, untranslatable, chain, trace or {})

    def speaks(self, plan: Plan, original: Original | None) -> bool:
        """Whether a deployment of the plan takes the request as it came."""
        router = self.services.router
        return original is not None and any(router.same_dialect(d, original.dialect) for d in plan.deployments)

    async def admit(self, claim: Claim, running: InFlight) -> Ticket:
        running.stage = "discovering_tools"
        chat, tools = await self.with_tools(claim.chat, claim.plan, claim.record)
        running.stage = "waiting_for_conversation"
        keeper: Keeper | None
        chat, keeper = await self.join(chat, claim.conversation_id, claim.owner)
        answer_id = f"{claim.dialect.id_prefix}{uuid.uuid4().hex}"
        original, untranslatable = claim.original, claim.untranslatable
        if claim.chain is not None:
            running.stage = "reading_previous_response"
            chat, keeper, original, untranslatable = await self.follow(chat, claim, answer_id)
        return Ticket(chat, claim.plan, claim.record, answer_id, keeper, tools, original, untranslatable)

    async def serve(self, claim: Claim, running: InFlight, outlet: Outlet, request_id: str) -> None:
        """Admit the chat within its key's limits, then run its exchange into ``outlet``, then count what
        it spent; a client that left ends it quietly. All of it is the call's span, when traces are on."""
        running.task = asyncio.current_task()
        with TRACING.call(claim.trace, "chat", claim.chat.model) as span:
            try:
                await self.limited(claim, running, outlet, request_id)
            finally:
                call_outcome(span, claim.record, self.services.log_content)

    async def limited(self, claim: Claim, running: InFlight, outlet: Outlet, request_id: str) -> None:
        quotas, record = self.services.quotas, claim.record
        try:
            running.stage = "checking_limits"
            hold = await quotas.reserve(
                claim.owner,
                claim.chat.model,
                [f"{d.provider}/{d.model}" for d in claim.plan.deployments],
                estimate_prompt_tokens(claim.chat),
                claim.chat.token_limit,
            )
        except asyncio.CancelledError:
            if running.left:
                return
            raise
        try:
            try:
                ticket = await self.admit(claim, running)
            except asyncio.CancelledError:
                if running.left:
                    return
                raise
            running.exchange = Exchange(self.services, ticket, claim.dialect)
            await running.exchange.serve(outlet, request_id)
        finally:
            await quotas.settle(claim.owner, hold, claim.chat.model, record.deployment, record.usage)

    async def follow(
        self, chat: ChatRequest, claim: Claim, answer_id: str
    ) -> tuple[ChatRequest, Keeper | None, Original | None, ApiError | None]:
        """A Responses request with the stored responses it continues, and the keeper of its own."""
        assert claim.chain is not None
        original, untranslatable = claim.original, claim.untranslatable
        try:
            chat, keeper = await self.responses.begin(chat, claim.chain, claim.owner, answer_id)
        except ResponseNotFoundError as missing:
            if not self.speaks(claim.plan, original):
                raise
            return chat, None, original, missing  # maybe one OpenAI stored: only its deployments are asked
        if claim.chain.previous_id is not None:
            if untranslatable is not None:
                raise untranslatable
            original = None  # OpenAI does not know the gateway's ids: the history goes in the request
        return chat, keeper, original, untranslatable

    async def with_tools(
        self, chat: ChatRequest, plan: Plan, record: AccessRecord
    ) -> tuple[ChatRequest, ToolLoop | None]:
        """With MCP tools asked for (by the request or its alias): the request offering them, and the loop."""
        if not uses_tools(chat, plan):
            return chat, None
        chat, offered = await offer_tools(self.registry, chat, plan)
        if not offered:
            return chat, None
        loop = self.services.config.tool_loop
        return chat, ToolLoop(self.registry, offered, loop.max_rounds, record, self.services.log_content)

    async def join(self, chat: ChatRequest, conversation_id: str | None, owner: str) -> tuple[ChatRequest, Turn | None]:
        """With a conversation: its history put into the request, and the turn that stores the answer."""
        if conversation_id is None:
            return chat, None
        try:
            return await self.conversations.begin(chat, conversation_id, owner)
        except DatabaseError as exc:
            raise store_unavailable(exc) from None


class HttpChat:
    """What an HTTP chat handler returns: an ASGI app that watches for the client's disconnect from
    the moment the body is read, through admission and the whole exchange."""

    def __init__(self, intake: Intake, claim: Claim):
        self.intake, self.claim = intake, claim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        running = InFlight(self.claim.record)
        watcher = asyncio.ensure_future(watch_disconnect(receive, running))
        outlet = HttpOutlet(send, scope.get(SERVER_SEND_KEY, send), self.claim.dialect.keepalive)
        try:
            await self.intake.serve(self.claim, running, outlet, str(scope.get(REQUEST_ID_KEY, "")))
        finally:
            watcher.cancel()


async def watch_disconnect(receive: Receive, running: InFlight) -> None:
    """Cancels the chat the moment the client goes; the body is already read."""
    message: Message = {"type": ""}
    while message["type"] != "http.disconnect":
        message = await receive()
    running.cancel()


def intake_of(connection: HTTPConnection) -> Intake:
    intake: Intake = connection.app.state.intake
    return intake


def http_chat(
    request: HTTPConnection,
    chat: ChatRequest,
    dialect: Dialect,
    original: Original | None = None,
    untranslatable: ApiError | None = None,
    chain: Chain | None = None,
) -> HttpChat:
    """The instant checks for a chat that came as an HTTP body, and the ASGI app that serves it."""
    intake = intake_of(request)
    record: AccessRecord = request.scope.get(ACCESS_KEY) or AccessRecord()
    owner, header = owner_of(request.scope), request.headers.get(CONVERSATION_HEADER)
    trace = trace_context(request.headers)
    claim = intake.check(chat, dialect, record, owner, header, original, untranslatable, chain, trace)
    return HttpChat(intake, claim)


def uses_tools(chat: ChatRequest, plan: Plan) -> bool:
    """Whether the request or its alias asks for the gateway's MCP tools."""
    return bool(plan.mcp) or any(isinstance(tool, McpTools) for tool in chat.tools or ())


def note_request(record: AccessRecord, chat: ChatRequest, log_content: bool) -> None:
    """What the access line says of the request: its model, and its messages only when LOG_CONTENT is on."""
    record.model = chat.model[:MODEL_LOG_LIMIT]
    if log_content:
        record.content = [{"role": message_role(m), "content": message_text(m.content)} for m in chat.messages]


def check_supported(chat: ChatRequest) -> None:
    if chat.n is not None and chat.n != 1:
        raise ApiError(
            400,
            f"n={chat.n} asks for several choices, but this gateway returns one choice per request. "
            "Send n=1 or leave it out, and send several requests for several answers.",
            code="unsupported_parameter",
            param="n",
        )


def conversation_id_of(chat: ChatRequest, header: str | None) -> str | None:
    """The body's ``conversation_id``, else the X-Conversation-Id header (a proxy may add the header)."""
    if header is not None and not 1 <= len(header) <= 128:
        raise ApiError(
            400,
            f"The X-Conversation-Id header must be 1 to 128 characters, got {len(header)}. Send a conversation's "
            "id from POST /api/v1/conversations, or leave the header out.",
            code="invalid_value",
            param="X-Conversation-Id",
        )
    return chat.conversation_id or header or None
