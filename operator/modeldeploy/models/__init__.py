"""Example models built offline on the test machine, for the data-plane tests and the demo.

Nothing here is imported by the operator: these modules need the optional ``models`` extra (numpy,
scikit-learn, onnx, onnxruntime) and train in seconds from data that ships inside a PyPI package.

- :mod:`modeldeploy.models.digits`: a small CNN on scikit-learn's ``load_digits``, exported to ONNX.
"""
