"""Verifying other implementations: ``gradcheck`` (central differences), ``conventions``
(other libraries' maps reproduced), ``vectors`` (golden reference files and ``compare``),
``resizers`` (bit-exact OpenCV / Torch7 resizing) and ``environment`` (``show_versions``)."""
