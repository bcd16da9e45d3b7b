"""Built-in catalogs: model presets and hardware, shipped as YAML under ``fathom/catalog/data``.

Presets are data, not code, so adding a model or a GPU means adding one YAML file that cites its source.
"""
