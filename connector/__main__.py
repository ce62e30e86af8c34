"""`python -m connector` is the same as the `learnosity-connector` script."""

import sys

from connector.cli import main

sys.exit(main())
