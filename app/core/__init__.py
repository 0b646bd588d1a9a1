"""Qt-free, torch-free core: project store, image I/O, the ONNX Runtime inspection runtime, monitoring."""
