"""The world model: memory pyramid, the network, and its configuration."""
