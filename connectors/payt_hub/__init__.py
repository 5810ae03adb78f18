"""payt_hub: connector hub feeding payt.administration.import_batch."""
__version__ = "0.1.0"
