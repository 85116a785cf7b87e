"""Telegram Stars: prices, checkout (invoices, pre-checkout, successful payments), Star
subscriptions, refunds, held shares and their release, reconciliation with Telegram's ledger.

Modules: `pricing` (Stars prices and USD values, which methods a channel offers), `checkout`
(XTR invoices and what a payment does), `holds` (the owner's share held for Telegram's
withdrawal hold, then released to the payout engine), `refunds`, `reconcile`, `support`
(/paysupport, /privacy, /terms).
"""
