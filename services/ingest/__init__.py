"""Channel ingestion: Meta webhooks in, normalized messages out, and the sender that talks back."""
