"""Audio preprocessing: band-limiting before resampling, and the DALI mel pipeline."""
