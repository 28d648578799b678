"""presence-controller: keeps a WhatsApp bot's presence honest from its consumer's health."""

__version__ = "0.1.0"
