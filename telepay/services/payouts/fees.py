"""Gas and fees for host transfers (EIP-1559): a fresh transfer's fee caps, gas with a margin, and
the fees of a replacement for a transfer stuck unmined.

A fresh transfer offers `2 x base fee + tip`: room for the base fee to rise 12.5 % per full block
for about six blocks. Beyond that it waits in the pool and every later nonce waits behind it, so
a stuck transfer is replaced: the same transaction (nonce, gas, recipient, value, data) with
both `maxFeePerGas` and `maxPriorityFeePerGas` raised by at least 10 % (geth refuses a
replacement that raises less: "replacement transaction underpriced"), and the fee cap raised
further when that is still below what today's base fee needs.
"""

from __future__ import annotations

from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3

PLAIN_TRANSFER_GAS = 21_000
# geth's default price bump for a same-nonce replacement, in percent.
REPLACEMENT_BUMP_PERCENT = 10


def base_fee(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["baseFeePerGas"])


def fresh(w3: Web3, tip: int) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) for a new transfer."""
    return 2 * base_fee(w3) + tip, tip


def with_margin(estimate: int) -> int:
    """Gas to give a transfer: a plain transfer uses exactly 21,000; anything that runs code may
    use more than estimated when state changes between estimate and inclusion (unused gas is
    refunded, so the margin costs nothing but the balance it must be covered by)."""
    return estimate if estimate == PLAIN_TRANSFER_GAS else estimate * 6 // 5


def bumped(value: int) -> int:
    """`value` raised by the replacement bump, rounded up (a 10 % raise of 7 wei is 8)."""
    return -(-value * (100 + REPLACEMENT_BUMP_PERCENT) // 100)


def replacement(w3: Web3, raw_tx: bytes, tip: int) -> dict:
    """The transaction of `raw_tx` with fees a node accepts as its replacement, ready to sign."""
    old = TypedTransaction.from_bytes(HexBytes(raw_tx)).as_dict()
    new_tip = max(bumped(int(old["maxPriorityFeePerGas"])), tip)
    new_cap = max(bumped(int(old["maxFeePerGas"])), 2 * base_fee(w3) + new_tip)
    return {"chainId": int(old["chainId"]), "nonce": int(old["nonce"]), "gas": int(old["gas"]),
            "to": Web3.to_checksum_address(old["to"]), "value": int(old["value"]), "data": bytes(old["data"]),
            "maxFeePerGas": new_cap, "maxPriorityFeePerGas": new_tip, "type": 2}

