import sys

from telepay_sandbox.demo import main

sys.exit(main())
