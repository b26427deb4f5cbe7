"""ng_viewer: a local web page over a rollouts JSONL file (see docs/viewer.md).

``index`` builds a byte-offset index with a small summary per row in one streaming pass; ``app``
serves a paged JSON API over it and the one static page in ``static/``.
"""

from ngym.viewer.app import create_app
from ngym.viewer.index import RunIndex

__all__ = ["RunIndex", "create_app"]
