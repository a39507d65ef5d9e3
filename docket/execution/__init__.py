"""The pure execution state machine: decide (command -> events) and fold (event -> state)."""
