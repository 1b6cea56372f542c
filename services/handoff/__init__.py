"""Human handoff: tickets per conversation, who is in charge, and replies sent by people."""
