"""``python -m ironmap``: same as the ``ironmap`` command."""

import sys

from .cli import main

sys.exit(main())
