"""Evaluating maps: ``scenes`` (synthetic scenes with known masks and boxes),
``localization`` (pointing game, box accuracy, discrimination) and ``tables``
(the ``npcam evaluate`` table)."""
