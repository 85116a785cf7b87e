"""Ethereum JSON-RPC over HTTP in front of an in-process eth-tester provider.

web3's eth-tester provider speaks Python values (ints, bytes) behind its own formatting
middleware; a node speaks JSON-RPC (hex quantities, hex data). `JsonRpcApp` takes web3's request
function for the provider, feeds it the JSON-RPC params as a web3 client sends them, and turns
the answer back into node-shaped JSON, so `Web3(HTTPProvider(url))` in another process sees an
ordinary node. Batches are served; failures come back as JSON-RPC errors, never as HTTP 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError

from telepay_sandbox.loopback import Request, Response

logger = logging.getLogger(__name__)

_PARSE_ERROR = -32700
_INVALID_REQUEST = -32600
_SERVER_ERROR = -32000  # what geth answers for a refused transaction (nonce, funds, gas)
_REVERTED = 3  # geth's code for "execution reverted"


def to_json_rpc(value: Any) -> Any:
    """Python values from eth-tester to JSON-RPC: ints as hex quantities, bytes as hex data."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {key: to_json_rpc(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_rpc(item) for item in value]
    raise TypeError(f"no JSON-RPC form for {type(value).__name__}")


class JsonRpcApp:
    def __init__(self, request_func: Callable[[str, Any], Mapping[str, Any]]) -> None:
        self._request = request_func

    def __call__(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, b'{"message":"JSON-RPC wants POST"}')
        try:
            payload = json.loads(request.body)
        except ValueError:
            return self._answer(_error(None, _PARSE_ERROR, "parse error"))
        if isinstance(payload, list):
            if not payload:
                return self._answer(_error(None, _INVALID_REQUEST, "empty batch"))
            return self._answer([self._one(item) for item in payload])
        return self._answer(self._one(payload))

    @staticmethod
    def _answer(body: Any) -> Response:
        return Response(200, json.dumps(body).encode())

    def _one(self, call: Any) -> dict[str, Any]:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return _error(None, _INVALID_REQUEST, "invalid request")
        call_id = call.get("id")
        params = call.get("params") or []
        try:
            response = self._request(call["method"], params)
        except (TransactionFailed, ContractLogicError) as error:
            return _error(call_id, _REVERTED, _reason(error), getattr(error, "data", None))
        except Exception as error:  # noqa: BLE001 - a node answers every failure as a JSON-RPC error
            logger.debug("eth-rpc %s failed", call["method"], exc_info=True)
            return _error(call_id, _SERVER_ERROR, _reason(error))
        if "error" in response:
            return {"jsonrpc": "2.0", "id": call_id, "error": dict(response["error"])}
        return {"jsonrpc": "2.0", "id": call_id, "result": to_json_rpc(response.get("result"))}


def _reason(error: Exception) -> str:
    return str(error.args[0]) if error.args else type(error).__name__


def _error(call_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if isinstance(data, (str, bytes)):
        error["data"] = data if isinstance(data, str) else "0x" + data.hex()
    return {"jsonrpc": "2.0", "id": call_id, "error": error}
