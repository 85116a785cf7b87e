"""`python -m bench` (`make bench`): every benchmark, one after another.

`--quick` runs them small, as a smoke test (CI-sized); without it the sizes are the real ones.
"""

from __future__ import annotations

import argparse
import logging

from bench import broadcast, concurrency, expiry, ipn_to_invite, keypad, memory, money_path, webhooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    args = parser.parse_args()
    # Waitress warns on every queued task under load; that is the point of a load test.
    logging.basicConfig(level=logging.ERROR)
    webhooks.main(["--requests", "300"] if args.quick else [])
    keypad.main(["--donors", "2", "--presses", "20", "--runs", "1"] if args.quick else [])
    broadcast.main(["--channels", "50"] if args.quick else [])
    memory.main(["--ipns", "500", "--idle-seconds", "2"] if args.quick else [])
    ipn_to_invite.main(["--payments", "20"] if args.quick else [])
    expiry.main(["--subscriptions", "20000", "--due", "200"] if args.quick else [])
    concurrency.main(["--buyers", "4", "--starts", "3", "--delay", "1"] if args.quick else [])
    money_path.main(["--payments", "3", "--workers", "1"] if args.quick else [])


if __name__ == "__main__":
    main()
