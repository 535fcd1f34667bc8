"""`python -m tuneflow.cli`: the same as the `tuneflow` command."""

import sys

from tuneflow.cli import main

sys.exit(main())
