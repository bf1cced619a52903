"""The two predictors (fit in training, predict in serving), the pole-lap estimate and
the BentoML model store that keeps the three models together."""
