"""The dev chain's provider, answering as a real node would where payout code depends on it.

eth-tester raises Python exceptions and keeps no mempool rules; a node answers JSON-RPC errors in
geth's words and refuses what geth refuses. `LockedProvider` puts eth-tester behind the chain's
one lock (py-evm is not thread-safe) and, while the chain is held (`DevChain.hold`), applies the
pool's rules: a same-nonce replacement must raise both fee caps by 10 % ("replacement transaction
underpriced"), and with `refuse_below_floor` a fee cap below the floor is refused outright, as
some hosted RPCs do. Kept apart from `chain` so that module reads as the chain's helpers.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_tester import EthereumTester
from eth_utils import ValidationError as EthValidationError, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

_NONCE_RE = re.compile(r"Invalid transaction nonce: Expected (\d+), but got (\d+)")


def node_message(error: Exception) -> str:
    """py-evm's refusal in the words geth uses, which is what payout code meets in production
    (a re-broadcast of a mined transaction is "nonce too low")."""
    text = str(error)
    if match := _NONCE_RE.search(text):
        expected, got = (int(n) for n in match.groups())
        return f"nonce too {'low' if got < expected else 'high'}: tx: {got} state: {expected}"
    if "enough balance" in text:
        return "insufficient funds for gas * price + value"
    return text


def fees_of(tx: dict[str, Any]) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) of a transaction, a legacy one's gasPrice for both."""
    fee = tx.get("max_fee_per_gas", tx.get("maxFeePerGas", tx.get("gas_price", tx.get("gasPrice", 0))))
    tip = tx.get("max_priority_fee_per_gas", tx.get("maxPriorityFeePerGas", fee))
    return int(fee), int(tip)


class LockedProvider(EthereumTesterProvider):
    """eth-tester behind one lock; refused transactions answer as a node's JSON-RPC error."""

    def __init__(self, tester: EthereumTester, lock: threading.RLock) -> None:
        super().__init__(tester)
        self._lock = lock
        self.fee_floor_wei: int | None = None  # set by DevChain.hold
        self.refuse_below_floor = False

    def make_request(self, method, params):
        with self._lock:
            if method == "eth_sendRawTransaction" and not self.ethereum_tester.auto_mine_transactions:
                refused = self._below_floor(params[0]) or self._underpriced(params[0])
                if refused:
                    return {"jsonrpc": "2.0", "id": "0", "error": {"code": -32000, "message": refused}}
            try:
                return super().make_request(method, params)
            except EthValidationError as error:
                return {"jsonrpc": "2.0", "id": "0", "error": {"code": -32000, "message": node_message(error)}}

    def _below_floor(self, raw: Any) -> str | None:
        """A hosted RPC's answer to a fee cap below the base fee: refused, not kept in a pool."""
        if not self.refuse_below_floor or self.fee_floor_wei is None:
            return None
        raw = HexBytes(raw)
        fee = fees_of(TypedTransaction.from_bytes(raw).as_dict() if raw[0] < 0x7F else {})[0]
        if fee < self.fee_floor_wei:
            return f"max fee per gas less than block base fee: maxFeePerGas: {fee}, baseFee: {self.fee_floor_wei}"
        return None

    def _underpriced(self, raw: Any) -> str | None:
        """geth's pool rule: a same-nonce replacement must raise both fee caps by 10 %."""
        raw = HexBytes(raw)
        sender = Account.recover_transaction(raw)
        new = TypedTransaction.from_bytes(raw).as_dict() if raw[0] < 0x7F else {}
        for pending in self.ethereum_tester._pending_transactions:
            if to_checksum_address(pending["from"]) == sender and int(pending["nonce"]) == int(new.get("nonce", -1)):
                if pending["hash"] == "0x" + Web3.keccak(raw).hex().removeprefix("0x"):
                    return None  # the same bytes again: already known, harmless
                (old_fee, old_tip), (fee, tip) = fees_of(pending), fees_of(new)
                if fee * 10 < old_fee * 11 or tip * 10 < old_tip * 11:
                    return "replacement transaction underpriced"
        return None
