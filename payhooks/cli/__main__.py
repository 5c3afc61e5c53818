"""`python -m payhooks.cli`: the same as the `payhooks` command."""

import sys

from payhooks.cli.entry import main

sys.exit(main())
