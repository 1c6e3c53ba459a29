"""Inference latency of an exported ONNX policy against ``model.predict``."""
