"""A product served in a process of its own, mounted with `upstream =`."""
