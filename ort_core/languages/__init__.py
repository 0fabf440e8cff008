"""Language bridges built into ort-core: executables (any language) and Scaleway sub-runtimes."""
