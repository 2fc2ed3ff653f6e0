"""The ``conversations:`` section of the config file."""

from __future__ import annotations

from typing import Annotated

import msgspec

Count = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
Tokens = Annotated[int, msgspec.Meta(ge=1)]
DEFAULT_DATABASE_URL = "sqlite:///data/conversations.db"


class HistoryLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How much of a conversation goes upstream with each turn, for one model."""

    max_messages: Count | None = None
    max_tokens: Tokens | None = None


class ConversationSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # DATABASE_URL, when set, takes precedence: it is how a deployment points replicas at PostgreSQL.
    database_url: str = DEFAULT_DATABASE_URL
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=200)] = 10
    max_messages: Count = 20  # the last N stored messages go upstream with each turn
    max_tokens: Tokens | None = None  # an estimated budget for the whole prompt; oldest history dropped first
    # A second turn on a conversation waits this long for the one in flight, then gets a 409.
    turn_wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    models: dict[str, HistoryLimits] = {}  # per model name as clients send it (alias or provider/model)

    def limits_for(self, model: str) -> tuple[int, int | None]:
        own = self.models.get(model, HistoryLimits())
        max_messages = own.max_messages if own.max_messages is not None else self.max_messages
        return max_messages, own.max_tokens if own.max_tokens is not None else self.max_tokens
