"""A NOWPayments IPN as the service layer takes it in: from the webhook (after its guards) and
from our own status queries (`payments/checker.py`). The API validates with it; it lives here so
the services never import the API."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator, model_validator

# No real payment comes near a trillion; above it the amount would not fit the USD columns
# (NUMERIC(20,8)) and the insert would fail as a server error instead of a clear 422.
MAX_AMOUNT = Decimal(10) ** 12


def _id_text(value: Any) -> str:
    """Provider ids arrive as JSON numbers (parsed to Decimal) or strings; keep them as text."""
    if isinstance(value, bool) or value is None:
        raise ValueError("must be an id")
    if isinstance(value, Decimal):
        if value != value.to_integral_value() or value < 0:
            raise ValueError("must be a whole number")
        text = str(int(value))
    elif isinstance(value, (int, str)) and str(value).strip():
        text = str(value).strip()
    else:
        raise ValueError("must be an id")
    if len(text) > 64:  # the column's width: refuse here rather than fail in the database
        raise ValueError("is too long")
    return text


# A currency code as NOWPayments spells them (`eth`, `usdterc20`, `usdtmatic`); the columns hold
# 32 characters, so a longer one is refused here instead of failing its whole IPN batch.
Currency = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class IpnIn(BaseModel):
    """A NOWPayments IPN. Unknown extra fields are allowed: providers add fields.

    The status is any short text, not one of the statuses we know: NOWPayments' help centre
    lists a merchant-set `cancelled` its API docs do not, and an IPN refused for its status is
    eventually dropped by them. A status we don't know is stored and put to review. `order_id`
    is null on a re-deposit (NOWPayments' one documented IPN example): such a payment names its
    `parent_payment_id` instead, and is linked to our order through its parent."""

    model_config = ConfigDict(extra="allow")

    payment_id: str
    payment_status: Annotated[str, StringConstraints(min_length=1, max_length=32, strip_whitespace=True)]
    order_id: Annotated[str, StringConstraints(min_length=1, max_length=36)] | None = None
    parent_payment_id: str | None = None
    invoice_id: str | None = None
    pay_address: str | None = None
    price_amount: Decimal | None = None
    price_currency: Currency | None = None
    pay_amount: Decimal | None = None
    actually_paid: Decimal | None = None
    actually_paid_at_fiat: Decimal | None = None
    pay_currency: Currency | None = None
    order_description: str | None = None
    outcome_amount: Decimal | None = None
    outcome_currency: Currency | None = None

    @model_validator(mode="after")
    def names_an_order(self) -> IpnIn:
        if self.order_id is None and self.parent_payment_id is None:
            raise ValueError("an IPN names its order_id, or its parent_payment_id when it is a re-deposit")
        return self

    @field_validator("payment_id", "parent_payment_id", "invoice_id", mode="before")
    @classmethod
    def ids_as_text(cls, value: Any) -> Any:
        return None if value is None else _id_text(value)

    @field_validator("price_amount", "pay_amount", "actually_paid", "actually_paid_at_fiat", "outcome_amount",
                     mode="before")
    @classmethod
    def amounts_are_decimal(cls, value: Any) -> Any:
        # The IPN guard parses numbers as Decimal; a float here would mean someone bypassed it.
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)  # a whole number (`"actually_paid_at_fiat":0`) is exact as it is
        if isinstance(value, str):
            try:
                value = Decimal(value.strip())
            except ArithmeticError:
                raise ValueError("must be a number") from None
        if not isinstance(value, Decimal):
            raise ValueError("must be a number")
        if not value.is_finite() or value < 0:
            raise ValueError("must be a non-negative amount")
        if value >= MAX_AMOUNT:
            raise ValueError("is out of range")
        return value
