"""Triton Inference Server deployment: repository writer, python-backend models, launcher and client.

Nothing here imports tritonclient or the server at module level; each function that needs one imports
it and says what to install when it is missing.
"""
