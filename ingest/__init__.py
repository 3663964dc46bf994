"""The ServiceTrade webhook ingest endpoints (an entry point: it enqueues tasks)."""
