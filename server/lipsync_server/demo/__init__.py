"""The demo avatar the project makes itself: a drawn person, synthetic speech, trained networks."""
