"""Stars prices and values: rounding up to whole Stars, exact splits, the methods a channel offers."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from telepay.models import PaymentMethod
from telepay.services.stars.pricing import default_stars, offered_methods, stars_split, tier_stars

RATE = Decimal("0.013")


@pytest.mark.parametrize(("usd", "stars"), [
    (Decimal("1.00"), 77), (Decimal("0.013"), 1), (Decimal("5.00"), 385), (Decimal("9999.99"), 10000),
])
def test_the_default_price_is_the_usd_price_rounded_up_to_a_whole_star(usd, stars):
    assert default_stars(usd, RATE) == stars


@given(st.decimals(min_value=Decimal("1"), max_value=Decimal("130"), places=2))
def test_a_default_price_never_undercharges_and_overcharges_by_less_than_a_star(usd):
    stars = default_stars(usd, RATE)
    assert stars * RATE >= usd > (stars - 1) * RATE


def test_the_owners_price_wins_over_the_default():
    assert tier_stars(SimpleNamespace(price_stars=50, price_usd=Decimal("10")), RATE) == 50
    assert tier_stars(SimpleNamespace(price_stars=None, price_usd=Decimal("10")), RATE) == 770


@given(st.integers(min_value=1, max_value=10**7), st.decimals(min_value=0, max_value=100, places=2))
def test_a_split_of_stars_is_exact(stars, fee):
    value, share, fee_usd = stars_split(stars, RATE, fee)
    assert value == stars * RATE and share + fee_usd == value and share >= 0 and fee_usd >= 0


@pytest.mark.parametrize(("crypto", "stars", "stars_only", "offered"), [
    (True, True, False, [PaymentMethod.STARS, PaymentMethod.CRYPTO]),
    (True, False, False, [PaymentMethod.CRYPTO]),
    (False, True, False, [PaymentMethod.STARS]),
    (True, True, True, [PaymentMethod.STARS]),
    (True, False, True, [PaymentMethod.STARS]),
])
def test_methods_offered_follow_the_owner_and_stars_only_mode(crypto, stars, stars_only, offered):
    channel = SimpleNamespace(accept_crypto=crypto, accept_stars=stars)
    assert offered_methods(channel, stars_only=stars_only) == offered
