"""Code shared by every service: settings, errors, logging, health, metrics, retry, HTTP."""
