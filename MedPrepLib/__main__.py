"""``python -m MedPrepLib`` is the ``medprep`` command."""

import sys

from .cli import main

sys.exit(main())
