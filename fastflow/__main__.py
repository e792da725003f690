"""``python -m fastflow`` is the ``fastflow`` command."""

from __future__ import annotations

import sys

from fastflow.cli import main

sys.exit(main())
