"""The commands: the ``pipeline`` group (the ``pipeline-manager`` script and ``flask pipeline``
alike) and ``flask user``.

May import ``webapp.notify``, ``webapp.accounts`` and ``webapp.core``. The ``pipeline`` group loads
no web stack (``flask user`` runs under Flask only).
"""
