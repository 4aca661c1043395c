"""landmask: facial landmarks with a small CNN of its own, and lip/eye masking."""
__version__ = "0.1.0"
