"""pasero: a lightweight, fairseq-inspired Transformer machine-translation framework."""

__version__ = "0.1.0"
