"""The deterministic workflow runtime: events in, commands out; no I/O and no wall clock."""
