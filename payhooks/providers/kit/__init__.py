"""What every provider package builds on; names no provider."""
