"""Benchmarks: each compares sellmesh with a baseline measured in the same run on the same machine."""
