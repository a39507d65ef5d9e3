"""Records <-> bytes (Avro single-object encoding), user values <-> payloads, exceptions <-> failures."""
