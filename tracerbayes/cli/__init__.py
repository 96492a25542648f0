"""The command line (``tracerbayes demo|run|batch|simulate|validate``), the workflow behind
it, the demo and the config.
"""
