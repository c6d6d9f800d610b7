"""``python -m modeldeploy``: same as the ``modeldeploy`` console script."""

import sys

from modeldeploy.cli import main

sys.exit(main())
