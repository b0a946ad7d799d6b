"""The HTTP room: what every domain's routes share (for now the live event WebSocket)."""
