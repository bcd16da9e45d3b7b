"""fathom: predict how LLM training and serving behave on real clusters before spending GPU hours.

Layers, lowest first: ``specs`` (model, hardware, plan) -> ``catalog`` (built-in presets) ->
``costmodel`` (ops -> time and bytes) -> ``training`` (memory and step-time estimators) ->
``validation`` -> ``cli``. Lower layers never import upper ones.
"""

__version__ = "0.1.0"
