"""Model registry, ONNX runtime and pre/post-processing for camcount detectors."""
