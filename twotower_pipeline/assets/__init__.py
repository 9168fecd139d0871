"""The lineage graph: app data -> training data -> model -> ONNX towers -> vectors -> active version."""
