#!/usr/bin/env bash
# Compile contracts/TestUSDT.sol into telepay_sandbox/contracts/TestUSDT.json (ABI + bytecode).
#
# Run once after changing the source; the JSON is committed so tests and the demo need no Node.
# Uses npm's `solc` (soljson, no native binary) at a pinned version, installed into a throwaway
# directory. EVM version "cancun": py-evm (the dev chain) runs up to prague, and cancun bytecode
# also runs on today's public Ethereum networks.
set -euo pipefail

SOLC_VERSION=0.8.28
EVM_VERSION=cancun
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="$root/telepay_sandbox/contracts/TestUSDT.json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

npm install --silent --no-save --no-audit --no-fund --prefix "$work" "solc@$SOLC_VERSION" >/dev/null

SOURCE="$here/TestUSDT.sol" OUT="$out" EVM_VERSION="$EVM_VERSION" NODE_PATH="$work/node_modules" node - <<'JS'
const fs = require("fs");
const crypto = require("crypto");
const solc = require("solc");

const source = fs.readFileSync(process.env.SOURCE, "utf8");
const input = {
  language: "Solidity",
  sources: { "TestUSDT.sol": { content: source } },
  settings: {
    evmVersion: process.env.EVM_VERSION,
    optimizer: { enabled: true, runs: 200 },
    // No metadata hash: the same source gives the same bytes wherever it is compiled.
    metadata: { bytecodeHash: "none" },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = (output.errors || []).filter((e) => e.severity === "error");
if (problems.length) {
  for (const e of problems) console.error(e.formattedMessage);
  process.exit(1);
}
const contract = output.contracts["TestUSDT.sol"].TestUSDT;
const artifact = {
  contractName: "TestUSDT",
  source: "contracts/TestUSDT.sol",
  sourceSha256: crypto.createHash("sha256").update(source).digest("hex"),
  compiler: { solc: solc.version(), evmVersion: process.env.EVM_VERSION, optimizerRuns: 200 },
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
};
fs.writeFileSync(process.env.OUT, JSON.stringify(artifact, null, 2) + "\n");
console.log(`wrote ${process.env.OUT} (solc ${solc.version()}, evm ${process.env.EVM_VERSION})`);
JS
