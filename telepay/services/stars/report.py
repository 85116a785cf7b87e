"""Stars money for `telepay report`: received (Stars and their USD value at the rate kept on
each payment), platform fees, shares held and released, refunds, and what is under review.

Every Stars payment is in exactly one place, so the buckets add up exactly:
received = fees + released + held + refunded + under review. A refund inside the hold puts the
whole value under "refunded" (no fee is kept on money given back); a refund after the release
stays in "released" and "fees" (that money left) and is counted again, for information, in
`refunded_after_release`, which operators settle by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from telepay.models import ShareStatus, StarPayment, StarPaymentStatus


@dataclass
class StarsMoney:
    payments: int = 0
    stars: int = 0
    received: Decimal = field(default_factory=Decimal)
    fees: Decimal = field(default_factory=Decimal)
    released: Decimal = field(default_factory=Decimal)
    held: Decimal = field(default_factory=Decimal)
    refunded: Decimal = field(default_factory=Decimal)
    review: Decimal = field(default_factory=Decimal)
    refunded_after_release: Decimal = field(default_factory=Decimal)

    def balanced(self) -> bool:
        return self.received == self.fees + self.released + self.held + self.refunded + self.review


def stars_report(session: Session) -> StarsMoney:
    money = StarsMoney()
    for row in session.scalars(select(StarPayment)):
        money.payments += 1
        money.stars += row.stars
        money.received += row.usd_value
        if row.share_status == ShareStatus.CANCELLED:
            money.refunded += row.usd_value
        elif row.share_status in (ShareStatus.HELD, ShareStatus.RELEASED):
            money.fees += row.fee_usd
            if row.share_status == ShareStatus.HELD:
                money.held += row.share_usd
            else:
                money.released += row.share_usd
                if row.status == StarPaymentStatus.REFUNDED:
                    money.refunded_after_release += row.usd_value
        else:
            money.review += row.usd_value
    return money
