"""One WebSocket channel implementation for every WebSocket endpoint."""
