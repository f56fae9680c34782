"""Small data sets written in exactly the real on-disk formats, for tests and benchmarks.

Each writer draws every class in its own colour (plus an orientation mark), so a test
can check labels against image content. Nothing here is used by real runs.
"""
