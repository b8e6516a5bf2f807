"""The contracts every stage agrees on, each written once: backbone specs, the served model's I/O, how audio
becomes model input (decoding, resampling, normalisation, MARBLE windows), the feature store's layout, the
task format, key names and checksums. The core imports no stage."""
