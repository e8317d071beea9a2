"""Real-cluster soak tools (``make soak``): see soak/README.md."""
