"""``python -m debleed.cli``: the ``debleed`` command."""

import sys

from debleed.cli import main

sys.exit(main())
