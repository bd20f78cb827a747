"""Torch-free runtime side and the `drq` command dispatcher."""
