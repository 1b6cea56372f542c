"""The orders service: the catalog, orders and their state machine, and the order topics."""
