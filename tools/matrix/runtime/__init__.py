"""What runs inside each matrix target: the entry point (cell_main) and the pytest plugin."""
