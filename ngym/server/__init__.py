"""HTTP plumbing shared by every server: the base class, sessions, the inter-server client, the head server."""
