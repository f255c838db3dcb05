"""Command-line layer: the only part of pasero that parses arguments or exits the process."""
