"""The one feature module: training and serving both build their rows here. Import
from the submodules (this package imports nothing: ``event`` and ``spec`` need no pandas)."""
