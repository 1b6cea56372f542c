"""The owners' thin HTTP API; owns tenancy and configuration (tenants, channel accounts, API keys)."""
