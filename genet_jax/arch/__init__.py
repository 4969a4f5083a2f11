"""The design space as plain data (no JAX): specs, the named networks, the authors' structure
string, parameter and multiply-add counts from a spec, and the parameter paths of a network."""
