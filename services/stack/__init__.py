"""The native runner (`ai-suite`): models, compose-driven process supervision."""
