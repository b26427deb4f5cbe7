"""Environment authoring: what an environment, agent or model author writes against."""
