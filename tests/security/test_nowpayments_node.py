"""Cross-checks of the IPN canonical form against real JavaScript (skipped without ``node``).

One Node process per test handles a whole batch, so thousands of cases stay fast.
"""

import json
import math
import random
import shutil
import struct
import subprocess

import pytest

from telepay.security.nowpayments import canonical_body, js_number
from tests.security.test_nowpayments import VECTORS

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# NOWPayments' published recipe: sort keys recursively, then JSON.stringify. Arrays are kept as
# arrays (see the module docstring of telepay.security.nowpayments).
CANONICALISE_JS = r"""
const sortDeep = (v) => Array.isArray(v) ? v.map(sortDeep)
  : (v && typeof v === "object")
    ? Object.keys(v).sort().reduce((r, k) => { r[k] = sortDeep(v[k]); return r; }, {})
    : v;
const input = require("fs").readFileSync(0, "utf8").split("\n");
process.stdout.write(input.map((line) => JSON.stringify(sortDeep(JSON.parse(line)))).join("\n"));
"""
NUMBERS_JS = r"""
const input = require("fs").readFileSync(0, "utf8").split("\n");
process.stdout.write(input.map((line) => String(Number(line))).join("\n"));
"""


def run_node(script: str, lines: list[str]) -> list[str]:
    result = subprocess.run(
        [NODE, "-e", script],
        input="\n".join(lines).encode(),
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout.decode("utf-8").split("\n")


def test_hand_written_vectors_match_node():
    raws = [param.values[0] for param in VECTORS]
    # The raw bodies are single-line; keep them byte-exact through stdin.
    out = run_node(CANONICALISE_JS, [raw.decode() for raw in raws])
    assert [line.encode() for line in out] == [param.values[1] for param in VECTORS]


def random_double(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.5:
        while True:
            value = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
            if math.isfinite(value):
                return value
    if kind < 0.8:
        # Prices, fees and crypto amounts: a few digits at every scale.
        return rng.randint(1, 10**rng.randint(1, 17)) * 10.0 ** rng.randint(-30, 30)
    return float(rng.choice([0, 1, -1, 1e21, 1e-6, 1e-7, 9.999999999999999e20, 2**53 + 2]))


def test_js_number_matches_node_on_random_doubles():
    rng = random.Random(20240601)
    values = [random_double(rng) for _ in range(20_000)]
    expected = run_node(NUMBERS_JS, [repr(v) for v in values])
    mismatches = [(v, js_number(v), e) for v, e in zip(values, expected) if js_number(v) != e]
    assert mismatches == []


KEY_CHARS = ["a", "b", "Z", "_", "0", "1", "9", "é", "Ж", "\uff01", "\ue000", "😀", "\ud800", "\x01"]


def random_key(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return str(rng.choice([0, 1, 2, 10, 99, 4294967294, 4294967295, rng.randint(0, 10**12)]))
    return "".join(rng.choice(KEY_CHARS) for _ in range(rng.randint(0, 4)))


def random_string(rng: random.Random) -> str:
    chars = ["a", " ", '"', "\\", "/", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "✓", "\u2028"]
    chars += ["\U0001f600", "\ud83d", "\ude00", "\udc00", "Подписка"]
    return "".join(rng.choice(chars) for _ in range(rng.randint(0, 6)))


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return {random_key(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 3 and roll < 0.25:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.45:
        return random_double(rng)
    if roll < 0.6:
        return rng.choice([rng.randint(-(10**25), 10**25), rng.randint(-1000, 1000)])
    if roll < 0.85:
        return random_string(rng)
    return rng.choice([None, True, False])


def spell_number(rng: random.Random, value: float) -> str:
    # The same double spelled the ways different senders spell it.
    return rng.choice([repr(value), f"{value:.17e}", f"{value:.20g}"])


def spell(rng: random.Random, value) -> str:
    """Write ``value`` as JSON text with varied but valid spellings (one line, ASCII)."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        sep = rng.choice([",", ", "])
        return "{" + sep.join(f"{json.dumps(k)}:{spell(rng, v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(spell(rng, v) for v in value) + "]"
    if isinstance(value, float):
        return spell_number(rng, value)
    return json.dumps(value)


def test_canonical_body_matches_node_on_random_bodies():
    rng = random.Random(7)
    bodies = []
    while len(bodies) < 3000:
        body = {random_key(rng): random_value(rng) for _ in range(rng.randint(1, 6))}
        if "__proto__" not in json.dumps(body):  # JavaScript's assignment would eat that key
            bodies.append(spell(rng, body))
    expected = run_node(CANONICALISE_JS, bodies)
    got = [canonical_body(raw.encode()).decode() for raw in bodies]
    mismatches = [(raw, g, e) for raw, g, e in zip(bodies, got, expected) if g != e]
    assert mismatches[:5] == []
