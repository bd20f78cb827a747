"""The `drq` command and the torch-free contracts every stage shares.

Image I/O and metrics (`drq.imaging`), atomic artifact writes (`drq.artifacts`), the recipe schema and
its grid arithmetic (`drq.recipe`, `drq.grids`), the engine manifest (`drq.manifest`) and the error
base (`drq.errors`). Imports nothing: `import drq.<module>` never pulls in torch, TensorRT or
onnxruntime, so a runtime install without torch can use all of it.
"""
