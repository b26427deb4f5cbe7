"""For environment developers: scaffold, conformance check and test doubles."""
