"""The feature service's API: the contract in ``proto/marblekit/features/v1/features.proto``, its generated
stubs (``marblekit.features.v1``, regenerated with ``scripts/generate-protos.sh``), the tensor encoding both
sides use, and a Python client that returns numpy arrays. Importable without torch."""
