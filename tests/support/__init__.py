"""What the tests share: deliveries, worker processes, test secrets, paths and the client factory."""
