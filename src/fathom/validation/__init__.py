"""Validation: fathom's predictions against published measurements, row by row, with sources."""
