"""VTP: a self-hosted virtual teaching platform with its own WebRTC SFU."""

__version__ = "0.1.0"
