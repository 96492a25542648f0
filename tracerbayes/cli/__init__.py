"""The command line (``tracerbayes demo|run|simulate|validate``), the workflow behind it, the demo
and the config.
"""
