"""The log interface and its backends. Nothing here knows about workflows."""
