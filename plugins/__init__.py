"""Built-in plugins. They are registered through the same entry-point group as third-party ones."""
