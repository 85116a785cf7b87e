"""`telepay demo`: the product's story, played against the sandboxes on the embedded database.

It starts the real `telepay run` process (as an operator would) wired to a loopback Telegram,
then acts as people would and prints a readable timeline. It needs no accounts and no network.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from telepay.sandbox.changenow import ChangeNowSandbox
from telepay.sandbox.harness import TelepayProcess, sandbox_env
from telepay.sandbox.nowpayments import Delivery, NowPaymentsSandbox
from telepay.sandbox.telegram import TelegramSandbox

BOT_TOKEN = "424242:sandbox-demo-token"
BOT_USERNAME = "TelePayDemoBot"


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.facts: dict[str, str] = {}

    def say(self, who: str, what: str) -> None:
        print(f"[{time.monotonic() - self.started:6.2f}s] {who:>10} | {what}", flush=True)

    def fact(self, name: str, value: object) -> None:
        self.facts[name] = str(value)


def _quote(text: str) -> str:
    first, _, rest = text.partition("\n")
    return f"“{first}{' …' if rest else ''}”"


def main(data_root: Path | None = None) -> int:
    timeline = Timeline()
    root = Path(data_root or "var")
    root.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="demo-", dir=root)).resolve()
    process: TelepayProcess | None = None
    ok = False
    try:
        with TelegramSandbox(token=BOT_TOKEN, bot_username=BOT_USERNAME) as telegram, \
                NowPaymentsSandbox("sandbox-nowpayments-key", "sandbox-nowpayments-ipn-secret") as nowpayments, \
                ChangeNowSandbox("sandbox-changenow-key", chain=None) as changenow:
            timeline.say("sandbox", f"Telegram Bot API emulator at {telegram.base_url}")
            env = sandbox_env(telegram_base_url=telegram.base_url, token=BOT_TOKEN,
                              bot_username=BOT_USERNAME, data_dir=data_dir,
                              nowpayments_base_url=nowpayments.base_url, changenow_base_url=changenow.base_url)
            process = TelepayProcess(env, data_dir / "telepay.log")

            migrated = process.telepay("db", "upgrade")
            if migrated.returncode != 0:
                raise RuntimeError("db upgrade failed:\n" + migrated.stderr)
            timeline.say("operator", f"telepay db upgrade -> {migrated.stdout.strip()} (embedded PostgreSQL)")

            process.start()
            timeline.say("operator", f"telepay run is up; GET /health -> "
                                     f"{httpx.get(process.base_url + '/health').json()}")

            alice = telegram.create_user("Alice", username="alice")
            alice.send("/start")
            timeline.say("alice", "sends /start to @" + BOT_USERNAME)
            welcome = alice.wait_for_message(timeout=15)
            timeline.say("bot", "to alice: " + _quote(welcome.text))
            timeline.fact("welcome received", "yes")
            _money_path(telegram, nowpayments, timeline, *_owner_and_buyer(telegram, timeline))

            code, seconds = process.stop()
            timeline.say("operator", f"SIGTERM -> exit code {code} after {seconds:.2f}s")
            timeline.fact("clean stop", f"exit {code} in {seconds:.2f}s")
            ok = code == 0
    except Exception as error:  # noqa: BLE001 - the demo reports any failure and exits 1
        timeline.say("demo", f"FAILED: {type(error).__name__}: {error}")
        if process is not None:
            print("--- telepay log ---\n" + process.log()[-4000:], file=sys.stderr)
    finally:
        if process is not None:
            process.kill()
    print("\nSummary")
    for name, value in timeline.facts.items():
        print(f"  {name:20} {value}")
    print(f"  {'result':20} {'OK' if ok else 'FAILED'} in {time.monotonic() - timeline.started:.1f}s")
    if ok:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"  data and log kept in {data_dir}")
    return 0 if ok else 1


def _until(condition, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.05)
    return value


def _press(person, message, label: str, expect: str) -> None:
    person.press(message, text=label).wait_for_answer(timeout=15)
    _until(lambda: expect in message.text, f"“{expect}” after pressing {label}")


def _owner_and_buyer(telegram: TelegramSandbox, timeline: Timeline):
    """An owner registers a pair and sets a tier and a wallet; a buyer gets an invoice button."""
    olga = telegram.create_user("Olga", username="olga")
    news = telegram.create_channel("Olga's News", username="olga_news", creator=olga)
    vip = telegram.create_channel("Olga's VIP", creator=olga)
    for chat in (news, vip):
        telegram.add_admin(chat, telegram.bot)
    timeline.say("olga", "made the bot an admin of @olga_news (public) and “Olga's VIP” (private)")
    olga.send("/start")
    menu = olga.wait_for_message(lambda m: "Welcome" in m.text, timeout=15)
    _press(olga, menu, "➕ Add channels", "send me the open channel")
    olga.send("@olga_news")
    olga.wait_for_message(lambda m: "Open channel" in m.text, timeout=15)
    olga.forward_to_bot(vip.post("Welcome, members!"))
    timeline.say("bot", "to olga: " + _quote(olga.wait_for_message(lambda m: "Registered" in m.text, timeout=15).text))
    form = olga.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=15)
    for field, answer in (("Price", "9.99"), ("Duration", "30")):
        _press(olga, form, "Tier 1: —" if field == "Price" else "Tier 1: $9.99 · ? days", "What would you")
        _press(olga, form, field, "Send" if field == "Price" else "How many days")
        olga.send(answer)
        form = olga.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=15)
    _press(olga, form, "💱 Currency", "Which currency")
    _press(olga, form, "Tether USDT (TRC-20)", "Unsaved changes")
    _press(olga, form, "👛 Address", "Send your payout address")
    olga.send("TJRabPrwbZy45sbavfcjinPJC18kjpRTv8")
    form = olga.wait_for_message(lambda m: m.text.startswith("⚙️"), timeout=15)
    timeline.say("olga", "tier 1: $9.99 for 30 days; payouts in USDT (TRC-20)")
    _press(olga, form, "💾 Save all changes", "Please confirm your new payout address")
    _press(olga, form, "✅ Yes, save all changes", "All changes saved")
    timeline.say("bot", "to olga: " + _quote(olga.wait_for_message(lambda m: "Security notice" in m.text,
                                                                    timeout=15).text))
    post = _until(lambda: [m for m in news.messages() if m.from_bot], "the subscription post")[0]
    link = post.buttons[0]["url"]
    timeline.say("bot", f"posts in @olga_news: {_quote(post.text)} [{post.buttons[0]['text']} -> {link}]")
    timeline.fact("pair registered", "yes")

    bob = telegram.create_user("Bob", username="bob")
    bob.open_deep_link(link)
    card = bob.wait_for_message(timeout=15)
    timeline.say("bob", "opens the tier link; bot: " + _quote(card.text))
    bob.press(card, text="💳 Pay $9.99")
    invoice = bob.wait_for_message(lambda m: "Your invoice" in m.text, timeout=15)
    timeline.say("bot", f"to bob: {_quote(invoice.text)} [{invoice.buttons[0]['text']} -> "
                        f"{invoice.buttons[0]['url']}]")
    timeline.fact("invoice button", "yes")
    return olga, vip, bob, invoice


def _money_path(telegram: TelegramSandbox, nowpayments: NowPaymentsSandbox, timeline: Timeline,
                olga, vip, bob, invoice) -> None:
    """Bob pays; the IPNs arrive with a repeat and a late one; his join request is approved and
    his link revoked; Olga hears about the sale and its payout."""
    provider_invoice = re.search(r"/invoice/(\d+)", invoice.buttons[0]["url"]).group(1)
    # waiting, confirming, confirming again (a repeat), sending, finished, then confirmed (late).
    payment_id = nowpayments.pay(provider_invoice, delivery=Delivery(order=[0, 1, 1, 3, 4, 2]))
    for record in nowpayments.ipns_for(payment_id):
        answer = (record.answer or b"").decode(errors="replace")
        timeline.say("nowpay", f"IPN {record.status:<10} -> {record.status_code} "
                               f"{'duplicate' if 'duplicate' in answer else 'accepted'}")
    welcome = bob.wait_for_message(lambda m: "Payment received" in m.text, timeout=15)
    link = welcome.buttons[0]["url"]
    timeline.say("bot", f"to bob: {_quote(welcome.text)} [{welcome.buttons[0]['text']} -> {link}]")
    timeline.say("bob", f"opens his link: {bob.join(link)}")
    _until(lambda: bob.status_in(vip) == "member", "bob's join request approved")
    _until(lambda: any(item["invite_link"] == link and item["is_revoked"] for item in telegram.invite_links(vip)),
           "bob's link revoked")
    timeline.say("bot", "approved bob's join request to “Olga's VIP”, then revoked his link")
    timeline.fact("join approved", "yes")
    note = olga.wait_for_message(lambda m: "New subscription" in m.text, timeout=15)
    timeline.say("bot", "to olga: " + " / ".join(note.text.splitlines()))
    timeline.fact("owner notified", "yes")
