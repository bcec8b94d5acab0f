"""``python -m conveyor``: the ``conveyor`` command."""

import sys

from .cli import main

sys.exit(main())
