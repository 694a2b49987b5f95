"""The package version, in one place (read by setup.cfg and ``npcam --version``)."""

__version__ = "0.5.0"
