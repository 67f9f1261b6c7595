"""tests/plugins holds modules that register methods on import: imported by the tests that use them, never at
collection (``--doctest-modules`` would otherwise register them for the whole session)."""

collect_ignore = ["cosine_kd.py"]
