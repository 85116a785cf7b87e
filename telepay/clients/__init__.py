"""Small clients for outside services, each pointed at a base URL (the real one or a sandbox)."""
