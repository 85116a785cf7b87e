"""`telepay demo`: offered to the product's CLI through the `telepay.commands` entry point."""

from __future__ import annotations

import sys

import click


@click.command()
def demo() -> None:
    """Play the product's story end to end on the embedded database and the sandboxes."""
    from telepay_sandbox.demo.story import main

    sys.exit(main())
