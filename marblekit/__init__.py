"""marblekit: music backbone features at catalog scale, scored on the MARBLE benchmark."""

__version__ = "0.1.0"
