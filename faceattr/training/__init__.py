"""The training loop and what drives it: losses, engine, export, sweeps."""
