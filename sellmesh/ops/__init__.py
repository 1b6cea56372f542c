"""On-call tools over the broker: read and replay any topic, work the dead-letter topics, move consumer groups."""
