"""linesync: self-hosted file sync where a one-line edit sends about one line."""

__version__ = "0.1.0"
