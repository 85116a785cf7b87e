"""The owner's Stars settings through the settings draft: a tier's Stars price (or automatic),
and which methods buyers may pay with; at least one must stay on."""

from __future__ import annotations

import pytest

from telepay.clock import ManualClock
from telepay.errors import InvalidInput
from telepay.models import Channel
from telepay.services.channels import ChatInfo, register_pair
from telepay.services.jobs import JobQueue
from telepay.services.setup import SetupService, parse_stars

OPEN, CLOSED = ChatInfo(-1001, "News", "news"), ChatInfo(-1002, "VIP", None)


@pytest.mark.parametrize(("text", "stars"), [("400", 400), ("1,000 stars", 1000), ("0", None), ("auto", None)])
def test_stars_prices_are_whole_stars_or_automatic(text, stars):
    assert parse_stars(text) == stars


@pytest.mark.parametrize("text", ["10001", "-5", "4.5", "many"])
def test_bad_stars_prices_name_the_limits(text):
    with pytest.raises(InvalidInput, match="1 to 10,000"):
        parse_stars(text)


def test_the_owner_sets_a_stars_price_and_the_methods(session_factory):
    setup = SetupService(JobQueue(session_factory), ManualClock(), address_validator=None)
    with session_factory.begin() as session:
        channel_id = register_pair(session, 1, OPEN, CLOSED).id
    draft = {"tiers": {"1": {"price": "5.00", "days": 30, "stars": 400}}, "accept_crypto": False}
    with session_factory.begin() as session:
        assert setup.review(session, channel_id, 1, draft).changes == ["accept_crypto", "stars_prices", "tiers"]
        setup.apply(session, channel_id, 1, draft, address_confirmed=False)
    with session_factory() as session:
        channel = session.get(Channel, channel_id)
        assert (channel.tiers[0].price_stars, channel.accept_crypto, channel.accept_stars) == (400, False, True)
    with session_factory.begin() as session, pytest.raises(InvalidInput, match="a way to pay"):
        setup.review(session, channel_id, 1, {"accept_stars": False})
    with session_factory.begin() as session:
        setup.apply(session, channel_id, 1, {"tiers": {"1": {"stars": None}}}, address_confirmed=False)
    with session_factory() as session:
        assert session.get(Channel, channel_id).tiers[0].price_stars is None  # back to automatic
