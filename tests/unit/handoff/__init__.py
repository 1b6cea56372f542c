"""Tests of the handoff service."""
