"""Training estimators: memory per GPU and step time for arrays of plans."""
