"""Values the ZotCluster passes to Kubernetes objects as they are, checked as the API server checks them.

The CRD keeps `resources` and `tolerations` free-form (they are Kubernetes' own types) and
`storage.local.size` a string, so the API server admits a ZotCluster with `size: 20GB` or
`resources: {limits: {memroy: 1Gi}}` and only refuses the StatefulSet the operator makes of it, later
and far from the user. These functions say it first, in `zot-operator render`, in local mode and in the
operator's own reading of the spec (a Degraded InvalidSpec condition), with the API server's rules:
k8s.io/apimachinery's resource.ParseQuantity and k8s.io/kubernetes' ValidateResourceRequirements and
ValidateTolerations. Each problem is (key below the field, message), for the caller to place.
"""

from __future__ import annotations

import difflib
import re
from decimal import Decimal
from typing import Any

from zot_registry.config.messages import show as _show

Problem = tuple[tuple[str | int, ...], str]

# resource.ParseQuantity: a signed decimal number, then one suffix: binary (Ki..Ei), decimal SI (n, u, m,
# k, M, G, T, P, E) or a decimal exponent (e3, E-2). "GB", "K" and "1Gi " are not quantities.
_QUANTITY = re.compile(
    r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_MULTIPLIERS = {
    "": Decimal(1),
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6), ("G", 9))},
    **{s: Decimal(10) ** e for s, e in (("T", 12), ("P", 15), ("E", 18))},
}
QUANTITY_HINT = "a Kubernetes quantity such as 20Gi, 500Mi, 250m or 2 (binary suffixes Ki, Mi, Gi, Ti, Pi, Ei)"


def parse_quantity(value: object) -> Decimal | None:
    """The value of a Kubernetes quantity (a string, or a YAML number as the API server takes it), or None
    when it is none."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = value if isinstance(value, str) else format(value, "f") if isinstance(value, float) else str(value)
    match = _QUANTITY.match(text)
    if not match:
        return None
    suffix = match["suffix"] or ""
    number = text[: len(text) - len(suffix)] if suffix else text
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    return Decimal(number) * _MULTIPLIERS[suffix]


def quantity_problem(value: object, positive: bool = False) -> str | None:
    """Why `value` cannot be a quantity of a storage request or a resource, or None."""
    amount = parse_quantity(value)
    if amount is None:
        hint = _unit_hint(value)
        return f"{_show(value)} is not {QUANTITY_HINT}{hint}"
    if amount < 0:
        return f"{_show(value)} must not be negative"
    if positive and amount == 0:
        return f"{_show(value)} must be greater than zero"
    return None


def _unit_hint(value: object) -> str:
    """For the units people write from habit: 20GB is not a quantity; 20Gi (2^30) or 20G (10^9) is."""
    match = re.match(r"^([0-9.]+)\s*([kKMGTPE])(i?)B$", value) if isinstance(value, str) else None
    if not match:
        return ""
    number, letter, binary = match.groups()
    binary_suffix, decimal_suffix = f"{letter.upper()}i", "k" if letter in "kK" else letter
    if binary:
        return f"; write {number}{binary_suffix}"
    return f"; write {number}{binary_suffix} (powers of 1024) or {number}{decimal_suffix} (powers of 1000)"


# The resource names a container may ask for without a domain (helper.IsStandardContainerResourceName).
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_RESOURCE_KEYS = ("limits", "requests", "claims")
# A qualified name (label key rules): an optional DNS subdomain prefix and a name of at most 63 characters.
_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def qualified_name_problem(name: str) -> str | None:
    """A Kubernetes qualified name (a label key, a toleration key): `[prefix/]name`."""
    prefix, _, last = name.rpartition("/")
    if "/" in prefix or (prefix == "" and name.startswith("/")):
        return f"{_show(name)} is not a qualified name: at most one '/', after a DNS subdomain"
    if prefix and (len(prefix) > 253 or not _PREFIX.match(prefix)):
        return f"{_show(name)}: the prefix before '/' must be a DNS subdomain (lower-case letters, digits, '-', '.')"
    if not last or len(last) > 63 or not _NAME.match(last):
        return (
            f"{_show(name)} is not a qualified name: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def _resource_name_problem(name: str) -> str | None:
    if "/" in name:
        # An extended resource (example.com/gpu) or a native one under kubernetes.io: a qualified name.
        return qualified_name_problem(name)
    if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
        return None
    hint = _suggest(name, _STANDARD_RESOURCES)
    return (
        f"{_show(name)} is not a resource a container can ask for: cpu, memory, ephemeral-storage, "
        f"hugepages-<size>, or an extended resource with a domain (example.com/gpu){hint}"
    )


def resources_problems(resources: dict[str, Any]) -> list[Problem]:
    """A container's `resources` (ResourceRequirements), as the API server validates a pod template."""
    problems: list[Problem] = []
    amounts: dict[str, dict[str, Decimal]] = {}
    for key, value in resources.items():
        if key not in _RESOURCE_KEYS:
            problems.append(
                ((key,), f"unknown key: resources has limits, requests and claims{_suggest(key, _RESOURCE_KEYS)}")
            )
        elif key == "claims":
            problems += _claims_problems(value)
        elif not isinstance(value, dict):
            problems.append(((key,), f"must be a map of resource names to quantities, got {_show(value)}"))
        else:
            amounts[key] = {}
            for name, quantity in value.items():
                name_problem = _resource_name_problem(str(name))
                problem = name_problem or quantity_problem(quantity)
                if problem:
                    problems.append(((key, str(name)), problem))
                else:
                    amounts[key][str(name)] = parse_quantity(quantity) or Decimal(0)
    for name, request in amounts.get("requests", {}).items():
        limit = amounts.get("limits", {}).get(name)
        if limit is not None and request > limit:
            problems.append(
                (("requests", name), f"must be less than or equal to the limit ({resources['limits'][name]})")
            )
    return problems


def _claims_problems(claims: object) -> list[Problem]:
    if not isinstance(claims, list):
        return [(("claims",), f"must be a list of {{name: ...}}, got {_show(claims)}")]
    problems: list[Problem] = []
    for index, claim in enumerate(claims):
        if not isinstance(claim, dict) or not isinstance(claim.get("name"), str) or not claim["name"]:
            problems.append((("claims", index), "must be {name: <a claim of the pod>} (and optionally request)"))
            continue
        for key in claim:
            if key not in ("name", "request"):
                problems.append(
                    (
                        ("claims", index, key),
                        f"unknown key: a claim has name and request{_suggest(key, ['name', 'request'])}",
                    )
                )
    return problems


_TOLERATION_KEYS = ("key", "operator", "value", "effect", "tolerationSeconds")
_OPERATORS = ("Exists", "Equal")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def tolerations_problems(tolerations: list[Any]) -> list[Problem]:
    """A pod's `tolerations`, as the API server's ValidateTolerations checks them."""
    problems: list[Problem] = []
    for index, toleration in enumerate(tolerations):
        if not isinstance(toleration, dict):
            problems.append(((index,), f"must be a map (key, operator, value, effect), got {_show(toleration)}"))
            continue
        problems += [((index, *key), message) for key, message in _toleration_problems(toleration)]
    return problems


def _toleration_problems(toleration: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for key in toleration:
        if key not in _TOLERATION_KEYS:
            hint = _suggest(str(key), _TOLERATION_KEYS)
            problems.append(((str(key),), f"unknown key: a toleration has {', '.join(_TOLERATION_KEYS)}{hint}"))
    strings = {k: toleration[k] for k in ("key", "operator", "value", "effect") if k in toleration}
    for key, value in strings.items():
        if not isinstance(value, str):
            problems.append(((key,), f"must be a string, got {_show(value)}"))
    if problems:
        return problems
    key, operator = toleration.get("key", ""), toleration.get("operator", "Equal") or "Equal"
    value, effect = toleration.get("value", ""), toleration.get("effect", "")
    if key:
        problem = qualified_name_problem(key)
        if problem:
            problems.append((("key",), problem))
    elif operator != "Exists":
        problems.append((("operator",), "must be Exists when key is empty (which tolerates every taint)"))
    if operator not in _OPERATORS:
        problems.append(
            (("operator",), f"must be Exists or Equal, got {_show(operator)}{_suggest(operator, _OPERATORS)}")
        )
    elif operator == "Exists" and value:
        problems.append((("value",), "must be empty when operator is Exists"))
    elif operator == "Equal" and (len(value) > 63 or not _LABEL_VALUE.match(value)):
        problems.append(
            (("value",), f"{_show(value)} is not a label value (at most 63 letters, digits, '-', '_', '.')")
        )
    if effect and effect not in _EFFECTS:
        problems.append((("effect",), f"must be one of {', '.join(_EFFECTS)} or empty{_suggest(effect, _EFFECTS)}"))
    if "tolerationSeconds" in toleration:
        seconds = toleration["tolerationSeconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            problems.append((("tolerationSeconds",), f"must be a whole number of seconds, got {_show(seconds)}"))
        elif effect != "NoExecute":
            problems.append((("effect",), "must be NoExecute when tolerationSeconds is set"))
    return problems
