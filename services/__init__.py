"""The services of the mesh, one package each; they share only `schemas` and read each other only through `query` modules."""
