"""``python -m grokbook``: the ``grokbook`` command."""

import sys

from .cli import main

sys.exit(main())
