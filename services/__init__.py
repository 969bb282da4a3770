"""Local AI Suite services."""
