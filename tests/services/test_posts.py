"""The subscribe post says how buyers may pay: the owner's switches, and Stars alone in STARS_ONLY."""

from __future__ import annotations

from decimal import Decimal

import pytest

from telepay.models import Channel, Tier
from telepay.services.posts import SUBSCRIBE, plan_posts


def _channel(stars: bool, crypto: bool) -> Channel:
    channel = Channel(key="k", owner_user_id=1, open_chat_id=-1, closed_chat_id=-2, open_title="News",
                      closed_title="VIP", accept_stars=stars, accept_crypto=crypto)
    channel.tiers.append(Tier(number=1, price_usd=Decimal("5.00"), days=30, active=True))
    return channel


@pytest.mark.parametrize(("stars", "crypto", "stars_only", "says"), [
    (True, True, False, "in Telegram Stars or crypto"),
    (False, True, False, "in crypto"),
    (True, False, False, "in Telegram Stars"),
    (True, True, True, "in Telegram Stars"),
    (False, True, True, "in Telegram Stars"),  # STARS_ONLY overrides the owner's crypto switch
])
def test_the_post_names_only_the_ways_buyers_can_pay(stars, crypto, stars_only, says):
    [post] = [p for p in plan_posts(_channel(stars, crypto), {}, "Bot", stars_only) if p.kind == SUBSCRIBE]
    assert f"you'll pay {says} and" in post.text
    if stars_only:
        assert "crypto" not in post.text
