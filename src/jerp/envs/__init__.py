"""Text environments behind one protocol (see base.py)."""
