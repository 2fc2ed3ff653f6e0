"""The streaming benchmark: a synthetic upstream, a light load generator, and the run that compares them."""
