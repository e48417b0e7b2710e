"""``splitfit-train`` subcommands. Each module has NAME, HELP, add_arguments(p), run(args).

Add a module path here to add a subcommand (bottlefit, bottlenetpp, search land later).
"""

COMMAND_MODULES: tuple[str, ...] = (
    "training.commands.train",
    "training.commands.bottlefit",
    "training.commands.bottlenetpp",
    "training.commands.search",
)
