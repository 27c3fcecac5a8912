"""Entry point of the zot-operator command (the operator arrives with a later issue)."""

import sys


def main() -> int:
    print("zot-operator: the operator is not built yet (see issue 4)", file=sys.stderr)
    return 2
