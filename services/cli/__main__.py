"""`python -m services.cli` runs the `ai` command."""

from services.cli.main import main

raise SystemExit(main())
