"""The AI agent: turns a customer's message into a reply and into proposals (commands) for the services."""

import os

# Before litellm is first imported anywhere below: without it, importing litellm reaches for the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
