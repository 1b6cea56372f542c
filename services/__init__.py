"""The services of the mesh, one package each.

They share only `schemas`, and read each other only through `query` modules.
"""
