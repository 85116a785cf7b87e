"""`telepay demo`: the product's story, played against the sandboxes on the embedded database.

It starts the real `telepay run` process (as an operator would) wired to loopback emulators of
Telegram, NOWPayments and ChangeNOW and to a dev Ethereum chain, then acts as people would and
prints a readable timeline and a summary. It needs no accounts and no network.

Modules: `stage` (sandboxes, the shared offset clock, the process), `timeline` (the output),
`sell` (an owner sets up shop, a buyer pays), `money` (payouts, a donation), `later` (a month
passes: reminders, removal, renewal), `stars` (Telegram Stars: a Star subscription, a refund
through /paysupport, the renewal a month later, the owner's payout after the hold), and `story`,
which plays them in order (`main`).

This package imports nothing itself: every `telepay` command loads the `demo` entry point
(`command`) to list it, and importing the story (web3, the dev chain, the emulators) cost each
`telepay` invocation about a second.
"""
