"""The payout engine: owners' shares, instant and batch payouts, sweeps, and the host wallet.

Modules: `allocation` (the split and `allocate_share`, the entry point payment processing
calls), `wallet` (the host wallet: sign, persist, broadcast exactly once), `exchanges`
(ChangeNOW quotes and exchanges), `runner` (the `payout.run` job: one payout, step by step),
`batches` (the 5-minute timer: sweeps, threshold batches, balance check), `review` (failure
streaks, needs_review and its alert), `alerts` (DMs to the operators), `locks` (advisory locks
held across external calls), `operations` (what operators do: list, show, retry, cancel, the
money report), `engine` (the pieces assembled for runtime).
"""

from telepay.services.payouts.allocation import PAYOUT_JOB, SHARE_QUANTUM, Allocation, allocate_share, split

__all__ = ["PAYOUT_JOB", "SHARE_QUANTUM", "Allocation", "allocate_share", "split"]
