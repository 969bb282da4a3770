"""`python -m services.stack` is `ai-suite`."""

import sys

from services.stack.cli import main

sys.exit(main())
