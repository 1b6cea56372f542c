"""The small shared runtime: settings, broker, database, Redis, metrics, logging, subscriber wrapper, CLI."""
