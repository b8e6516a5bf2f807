"""The contracts every stage agrees on, each written once: backbone specs, the served model's I/O, the feature
store's layout, the synthetic-task format, key names and checksums. The core imports no stage."""
