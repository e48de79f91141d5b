"""``python -m onnxgraph``: the same command line as the ``onnxgraph`` console script."""

from __future__ import annotations

from onnxgraph.console import main

if __name__ == "__main__":
    main()
