"""SQLAlchemy models, the engine factory and Alembic migrations.

Importing this package registers every table on `Base.metadata` (Alembic reads it).
"""

from telepay.models.base import Base
from telepay.models.channels import (
    AuditLog, BroadcastPost, Channel, ChannelStatus, PayoutCurrency, PayoutStrategy, Tier,
)
from telepay.models.jobs import Job, JobState
from telepay.models.lifecycle import ReminderCursor
from telepay.models.payments import (
    Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentEvent, PaymentMethod, PaymentStatus, RefusedIpn,
)
from telepay.models.payouts import (
    Accumulation, ChainTransaction, ChainTxAttempt, ChainTxStatus, Payout, PayoutKind, PayoutStatus,
)
from telepay.models.stars import (
    LegalText, ShareStatus, StarPayment, StarPaymentStatus, StarReconciliation, SupportRequest,
)
from telepay.models.state import AcceptedSignature, BotState, TimerRun
from telepay.models.subscriptions import Invite, InviteStatus, Subscription, SubscriptionStatus

__all__ = [
    "AcceptedSignature", "Accumulation", "AuditLog", "Base", "BotState", "BroadcastPost",
    "ChainTransaction", "ChainTxAttempt", "ChainTxStatus", "Channel", "ChannelStatus", "Invite", "InviteStatus",
    "Invoice", "InvoiceKind", "InvoiceStatus", "Job", "JobState", "Payment", "PaymentEvent",
    "PaymentMethod", "PaymentStatus", "Payout", "LegalText", "ShareStatus", "StarPayment",
    "StarPaymentStatus", "StarReconciliation", "SupportRequest", "PayoutCurrency", "PayoutKind", "PayoutStatus",
    "PayoutStrategy",
    "RefusedIpn", "ReminderCursor",
    "Subscription", "SubscriptionStatus", "Tier", "TimerRun",
]
