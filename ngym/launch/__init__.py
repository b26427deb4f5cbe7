"""Starting, watching and stopping a deployment."""
