"""What the chain says about the host wallet's own transfers, read-only: for `payouts reconcile`.

After a database restore the records may be missing transfers the wallet made after the backup.
They show as a nonce gap: the chain has counted more of the wallet's transactions than the
records hold. The transaction behind a nonce is found without an index: the wallet's transaction
count at a past block (`eth_getTransactionCount` with a block number) rises by one in the block
that mined it, so a binary search over blocks finds that block in about log2(blocks) calls, and
the block's transactions name it. Its signed bytes are taken from the node when it serves
`eth_getRawTransactionByHash`, else re-encoded from its fields; either way they are kept only
if they hash to the transaction's hash, so what is recorded is exactly what was mined.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from eth_account.typed_transactions import TypedTransaction
from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3Exception

from telepay.services.payouts.wallet import ETH, USDT, HostWallet

_TRANSFER = bytes.fromhex("a9059cbb")  # ERC-20 transfer(address,uint256)


@dataclass(frozen=True)
class SeenTransfer:
    """One transaction the host wallet sent, as the chain has it."""

    nonce: int
    tx_hash: str
    asset: str | None            # ETH, USDT, or None for any other call
    to_address: str              # the recipient (for USDT, the token's recipient, not the contract)
    amount_base_units: int
    block_number: int | None
    mined_at: datetime | None    # the block's time
    succeeded: bool | None       # None: not mined
    raw_tx: bytes | None         # the signed bytes, verified against the hash (None: none to be had)
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    contested: tuple[int, ...] = ()  # payouts in flight that each could own it (reconcile's finding)

    def describe(self) -> str:
        what = f"{self.amount_base_units} {self.asset} base units" if self.asset else "a contract call"
        where = f"mined in block {self.block_number}" if self.block_number is not None else "not mined"
        outcome = "" if self.succeeded is not False else ", reverted"
        shared = f" (payouts {list(self.contested)} all pay there)" if self.contested else ""
        return f"nonce {self.nonce} {self.tx_hash}: {what} to {self.to_address}, {where}{outcome}{shared}"


class ChainLook:
    def __init__(self, wallet: HostWallet):
        self.w3: Web3 = wallet.w3
        self.address = wallet.address
        self.usdt = wallet.usdt.address.lower()
        self.confirmations = wallet.confirmations

    def nonces(self) -> tuple[int, int]:
        """The wallet's transaction counts: mined ("latest") and including the node's pool ("pending")."""
        return (self.w3.eth.get_transaction_count(self.address, "latest"),
                self.w3.eth.get_transaction_count(self.address, "pending"))

    def receipt(self, tx_hash: str) -> Any | None:
        try:
            return self.w3.eth.get_transaction_receipt(HexStr(tx_hash))
        except TransactionNotFound:
            return None

    def in_pool(self, tx_hash: str) -> bool:
        """The node holds the transaction unmined."""
        try:
            return self.w3.eth.get_transaction(HexStr(tx_hash)).get("blockNumber") is None
        except TransactionNotFound:
            return False

    def final(self, receipt: Any) -> bool:
        """Mined `confirmations` deep, as the wallet counts them (its own block included)."""
        return self.w3.eth.block_number - receipt["blockNumber"] + 1 >= self.confirmations

    def by_nonce(self, nonce: int, low_block: int = 0) -> SeenTransfer:
        """The wallet's mined transaction with `nonce` (which must be below the "latest" count)."""
        low, high = max(0, low_block), int(self.w3.eth.block_number)
        if self.w3.eth.get_transaction_count(self.address, low) > nonce:
            low = 0  # the hint was too late: search the whole chain
        while low < high:  # the first block after which the count exceeds `nonce`
            middle = (low + high) // 2
            if self.w3.eth.get_transaction_count(self.address, middle) > nonce:
                high = middle
            else:
                low = middle + 1
        block = self.w3.eth.get_block(low, full_transactions=True)
        for tx in block["transactions"]:
            if isinstance(tx, bytes):
                continue  # a hash: the node ignored full_transactions
            if tx["from"].lower() == self.address.lower() and tx["nonce"] == nonce:
                # Asked again by hash: a block's copy may lack fields the signed bytes need (chainId).
                return self._seen(self.w3.eth.get_transaction(tx["hash"]))
        raise LookupError(f"block {low} should hold nonce {nonce} of {self.address}, but does not")

    def _seen(self, tx: Any) -> SeenTransfer:
        tx_hash = tx["hash"].to_0x_hex()
        to, data = (tx["to"] or "").lower(), _data(tx)
        asset: str | None = None
        recipient, amount = to, int(tx["value"])
        if to == self.usdt and data[:4] == _TRANSFER and len(data) >= 68:
            asset, recipient, amount = USDT, "0x" + data[16:36].hex(), int.from_bytes(data[36:68], "big")
        elif not data:
            asset = ETH
        receipt = self.receipt(tx_hash)
        mined_at = None
        if tx.get("blockNumber") is not None:
            stamp = self.w3.eth.get_block(tx["blockNumber"])["timestamp"]
            mined_at = datetime.fromtimestamp(stamp, timezone.utc)
        return SeenTransfer(
            nonce=tx["nonce"], tx_hash=tx_hash, asset=asset, to_address=Web3.to_checksum_address(recipient),
            amount_base_units=amount, block_number=tx.get("blockNumber"), mined_at=mined_at,
            succeeded=None if receipt is None else receipt["status"] == 1, raw_tx=self._raw(tx, tx_hash),
            gas=int(tx["gas"]), max_fee_per_gas=int(tx.get("maxFeePerGas") or tx.get("gasPrice") or 0),
            max_priority_fee_per_gas=int(tx.get("maxPriorityFeePerGas") or 0))

    def _raw(self, tx: Any, tx_hash: str) -> bytes | None:
        candidates = []
        try:
            candidates.append(bytes(self.w3.eth.get_raw_transaction(HexStr(tx_hash))))
        except (Web3Exception, ValueError):
            pass  # not every node serves eth_getRawTransactionByHash
        if tx.get("type") == 2:
            fields = {name: tx[name] for name in ("chainId", "nonce", "maxFeePerGas", "maxPriorityFeePerGas", "gas",
                                                  "to", "value", "accessList")}
            fields.update(type=2, data=_data(tx), v=tx.get("yParity", tx["v"]),
                          r=int.from_bytes(bytes(tx["r"]), "big"), s=int.from_bytes(bytes(tx["s"]), "big"))
            try:
                candidates.append(TypedTransaction.from_dict(fields).encode())
            except (TypeError, ValueError):
                pass
        for raw in candidates:
            if Web3.keccak(raw).to_0x_hex() == tx_hash:
                return raw
        return None


def _data(tx: Any) -> bytes:
    """The call data: nodes name it `input`; some (eth-tester's blocks) `data`."""
    return bytes(tx["input"] if "input" in tx else tx.get("data") or b"")
