"""RQ jobs: plain module-level functions, importable by dotted path."""
