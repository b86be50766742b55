"""``python -m market_app.cli …``: the same as the ``market`` console script."""

import sys

from market_app.cli.main import main

sys.exit(main())
