"""F1 Predictor: data pipeline, features and serving pieces (see README.md)."""

__version__ = "0.1.0"
