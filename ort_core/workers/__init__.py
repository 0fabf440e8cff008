"""What every out-of-process bridge shares: the worker protocol, the process, the restart."""
