import sys

from rlmath.cli import main

sys.exit(main())
