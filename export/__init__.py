"""Export stage (``jobtitles.export``): encoder + trained head → one ONNX model bundle.

Needs the ``[train]`` extra; modules check for it on import.
"""
