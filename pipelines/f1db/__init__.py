"""F1DB: download the YAML source tree, parse it into cached tables, lap times."""
