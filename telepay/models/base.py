"""Declarative base: type conventions shared by every model.

Money is `Decimal` in Python and `NUMERIC` in PostgreSQL, never float. Timestamps are UTC
`timestamptz`. Enums are stored as their string values (not native PostgreSQL enums) so a new
state is a code change, not a type migration. Constraint names follow one convention so
Alembic migrations can refer to them.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Enum, MetaData, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# USD amounts: prices are whole cents, but shares and fees computed from what arrived keep
# eight places so conservation holds exactly until amounts are rounded for a payout.
Usd = Numeric(20, 8)
# Crypto amounts as the providers quote them (up to 18 decimals for ETH).
CryptoAmount = Numeric(38, 18)
# Token amounts in integer base units (wei, USDT's 6-decimal units): fits any uint256.
BaseUnits = Numeric(78, 0)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        int: BigInteger(),
        datetime: DateTime(timezone=True),
        Decimal: Usd,
        dict[str, Any]: JSONB(),
        list[Any]: JSONB(),
        enum.Enum: Enum(
            enum.Enum,
            native_enum=False,
            length=32,
            values_callable=lambda members: [m.value for m in members],
            validate_strings=True,
        ),
    }
