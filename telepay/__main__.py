# A stop signal during the imports below already ends the process cleanly (exit 0).
from telepay.ops.signals import StopSignals

StopSignals().install()

from telepay.cli import main  # noqa: E402 - after the signal handlers, on purpose

main()
