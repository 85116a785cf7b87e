"""Payload schemas for the webhooks, validated before anything is stored."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# The IPN schema belongs to the service layer (our own status queries use it too).
from telepay.services.ipn_schema import IpnIn

__all__ = ["BroadcastTriggerIn", "IpnIn", "NotificationIn"]

Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NotificationIn(Strict):
    channel_id: int = Field(gt=0, lt=2**63)
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000, strip_whitespace=True)]
    # Lets a caller retry safely: the same key for the same channel is queued once.
    idempotency_key: Key | None = None


class BroadcastTriggerIn(Strict):
    channel_id: int = Field(gt=0, lt=2**63)
