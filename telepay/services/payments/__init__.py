"""Payments in: a payment's state from its IPNs (`state`), the `payment.process` job
(`processor`), the status query for payments whose IPNs seem lost (`checker`), and what people
are told (`texts`). Import the modules themselves; this package re-exports nothing, so
`fulfilment` can use `texts` without a cycle.
"""
