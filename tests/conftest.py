"""Puts ``tests/`` on ``sys.path`` (pytest's prepend mode does so for a conftest's folder), so
test modules in sub-folders can import the shared helpers here (``core_net``)."""
