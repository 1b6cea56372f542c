"""Built-in stand-ins for the Meta Graph and Stripe APIs, served by `sellmesh up` when no real base URL is set."""
