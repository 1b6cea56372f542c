"""Benchmarks: each compares sellmesh with a baseline measured in the same run on the same machine."""

import os

# Before anything imports litellm: without it, importing litellm reaches for the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
