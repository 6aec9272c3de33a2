"""``python -m deepspan.report OUT``: rebuild OUT/report.html from the saved results in OUT/results."""

import sys

from deepspan.report.html import main

sys.exit(main())
