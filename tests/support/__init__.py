"""What the tests share, one module per concern (test modules and conftest files import from here,
never from each other)."""
