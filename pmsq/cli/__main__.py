"""`python -m pmsq.cli`: the `pmsq` command line without its console script."""

import sys

from pmsq.cli.commands import main

sys.exit(main())
