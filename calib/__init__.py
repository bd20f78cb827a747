"""PTQ for SR networks: models, quantizers, calibration, finetuning, and the recipe schema.

Imports nothing heavy: torch is only imported by the modules that need it.
"""
