"""RQ jobs that apply payment events to Nexudus, and the Nexudus client they use."""
