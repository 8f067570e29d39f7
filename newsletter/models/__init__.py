"""The data model (see ARCHITECTURE.md), one module per part of the service; every
name is importable from here. Alembic migrations are made from it.

Every timestamp is stored as UTC and read back timezone-aware, on SQLite too.
"""

from newsletter.models.base import (
    LINK_KEY_LIMIT,
    NAMING_CONVENTION,
    OPEN,
    WAITING,
    Base,
    BounceKind,
    DeliveryStatus,
    EditionStatus,
    Frequency,
    SubscriberStatus,
    UTCDateTime,
    new_link_key,
    string_enum,
    utcnow,
)
from newsletter.models.editions import Delivery, DeliveryItem, Edition, PlanBatch
from newsletter.models.library import FollowedAuthor, LibraryImport, LibrarySeed
from newsletter.models.operations import (
    AccountMailFailure,
    AdminAction,
    Bounce,
    Operator,
    RelayError,
    SendRate,
    SourceState,
    Suppression,
)
from newsletter.models.papers import Paper, PaperEmbedding
from newsletter.models.readers import Feedback, Interest, Subscriber, Topic

__all__ = [
    "LINK_KEY_LIMIT",
    "NAMING_CONVENTION",
    "OPEN",
    "WAITING",
    "AccountMailFailure",
    "AdminAction",
    "Base",
    "Bounce",
    "BounceKind",
    "Delivery",
    "DeliveryItem",
    "DeliveryStatus",
    "Edition",
    "EditionStatus",
    "Feedback",
    "FollowedAuthor",
    "Frequency",
    "Interest",
    "LibraryImport",
    "LibrarySeed",
    "Operator",
    "Paper",
    "PaperEmbedding",
    "PlanBatch",
    "RelayError",
    "SendRate",
    "SourceState",
    "Subscriber",
    "SubscriberStatus",
    "Suppression",
    "Topic",
    "UTCDateTime",
    "new_link_key",
    "string_enum",
    "utcnow",
]
