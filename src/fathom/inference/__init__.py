"""Inference cost model: the time of one engine iteration and the KV-cache capacity of a replica."""
