"""Sub-commands of the ``iipa`` CLI, discovered by module (see ``iipa.cli``)."""
