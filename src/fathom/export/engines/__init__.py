"""One module per engine; each defines ``ENGINE`` (see ``fathom.export.registry``)."""
