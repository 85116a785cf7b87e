import sys

from telepay_sandbox.demo.story import main

sys.exit(main())
