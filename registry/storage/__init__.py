"""Storage: the Store seam (base.py), the layout and index rules both stores share, and the stores (local/, s3/)."""
