"""edgekit: from a microcontroller and a task to a measured model on the board."""
__version__ = "0.1.0"
