"""The imperative shell: the only place where log, state store and clock meet."""
