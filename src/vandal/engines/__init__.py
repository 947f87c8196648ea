"""Where images are scored beyond this process: a Ray cluster (``--engine ray``, the ``ray`` extra).

Importing this package loads nothing of Ray; :mod:`.ray_engine` imports it when a run starts.
"""
