"""The signalling edge: WebSocket signalling, REST transports, WHIP and WHEP."""
