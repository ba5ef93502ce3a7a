"""The ``coordinator`` command and its subcommands, each in a module of its own (loaded only
when it runs), and the demo."""
