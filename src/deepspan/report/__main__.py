"""``python -m deepspan.report [--redraw] OUT``: rebuild OUT/report.html, OUT/report.json and OUT/figures from the
saved results in OUT/results (and the models table from OUT/models.json)."""

import sys

from deepspan.report.html import main

sys.exit(main())
