"""Per-partition RocksDB state stores. Nothing here knows about workflows beyond key layout."""
