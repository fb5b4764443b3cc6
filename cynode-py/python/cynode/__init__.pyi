def version() -> str:
    """The version of the CyNodeAI build these bindings come from."""

def validate_handle(handle: str) -> None:
    """Raise ValueError when `handle` is not a valid user handle."""
