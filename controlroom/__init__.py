"""Control Room shared package: settings, feed catalog, province reference, wire schema, logging, CLI."""

__version__ = "0.1.0"
