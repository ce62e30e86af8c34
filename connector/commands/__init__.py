"""One module per subcommand, each with ``configure(parser)`` and ``run(args) -> int``."""
