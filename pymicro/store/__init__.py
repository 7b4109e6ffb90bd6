"""The model store: a SQLite index beside blob files, written atomically (``registry``)."""
