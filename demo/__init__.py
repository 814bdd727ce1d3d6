"""The bundled demo acoustic model: a small streaming Conformer-CTC that honours T-one's
two ONNX contracts, plus the synthetic data, training and export scripts around it.

Only needed to (re)build the shipped ONNX files; the sweep itself never imports torch.
"""
