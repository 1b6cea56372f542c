"""The wire contract: one pydantic model family per Kafka topic, and the topic names."""
