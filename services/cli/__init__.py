"""The `ai` command: ask the suite's gateway from any folder."""
