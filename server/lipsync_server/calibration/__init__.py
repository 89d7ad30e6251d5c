"""What calibrates and checks networks, below both the demo and avatar creation: speech made
here (voice) and the mouth opening it calls for (mouth_track)."""
