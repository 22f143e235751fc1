"""The three stages of lagmon, each its own OS process."""
