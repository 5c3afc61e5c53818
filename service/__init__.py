"""The webhook receiver: verify, normalise, enqueue, acknowledge. It never calls Nexudus."""
