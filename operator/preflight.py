"""`zot-operator run` checks that it can reach the Kubernetes API before it starts kopf.

Without this, an unreachable API server looks like 9 retries per resource and a handful of
tracebacks before kopf gives up. Here it is one line that says what is wrong and where to look.
The configuration is found the way kopf finds it (in the cluster first, then the kubeconfig), so
what is checked is what kopf will use.
"""

from __future__ import annotations

import os
import re
import socket
import ssl

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

HINT = "set KUBECONFIG or run in a cluster"
TIMEOUT = 10.0  # seconds for the API server to answer GET /version


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".")


def _configuration() -> client.Configuration:
    """The client configuration kopf will log in with; ValueError with the reason when there is none."""
    try:
        config.load_incluster_config()
    except config.ConfigException as in_cluster:
        kubeconfig = os.environ.get("KUBECONFIG")
        if kubeconfig and not any(os.path.exists(os.path.expanduser(p)) for p in kubeconfig.split(os.pathsep) if p):
            raise ValueError(f"KUBECONFIG={kubeconfig}: no such file") from None
        try:
            config.load_kube_config()
        except Exception as err:  # a malformed file raises YAML, type and key errors too
            if kubeconfig:
                raise ValueError(f"cannot use the kubeconfig {kubeconfig}: {_one_line(str(err))}") from None
            if not os.path.exists(os.path.expanduser("~/.kube/config")):
                where = (
                    f"the in-cluster configuration failed ({_one_line(str(in_cluster))})"
                    if os.environ.get("KUBERNETES_SERVICE_HOST")
                    else "not in a cluster"
                )
                raise ValueError(f"no Kubernetes API configured: {where} and no kubeconfig (~/.kube/config)") from None
            raise ValueError(f"cannot use the kubeconfig ~/.kube/config: {_one_line(str(err))}") from None
    return client.Configuration.get_default_copy()


def _reason(err: BaseException) -> str:
    """The innermost cause of a failed request, in a few words (`connection refused`)."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    for cause in reversed(chain):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verify failed: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or _one_line(str(cause))}"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host: {cause.strerror}"
        if isinstance(cause, (TimeoutError, urllib3.exceptions.TimeoutError)):
            return f"no answer in {TIMEOUT:.0f} s"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
    return _one_line(str(err))


def check_api() -> str | None:
    """None when the API server answers; otherwise the one line to print."""
    try:
        configuration = _configuration()
    except ValueError as err:
        return f"error: {err}; {HINT}"
    configuration.retries = 1
    host = configuration.host
    api = client.ApiClient(configuration)
    try:
        client.VersionApi(api).get_code(_request_timeout=TIMEOUT)
    except ApiException as err:
        if err.status == 401:
            return (
                f"error: the Kubernetes API at {host} refused the credentials (401 Unauthorized): "
                "check the kubeconfig's user, or the pod's service account token"
            )
        return None  # it answered: whatever else is wrong, kopf reports it in context
    except Exception as err:  # urllib3 and ssl errors, in many shapes: all mean "not reachable"
        return f"error: cannot reach the Kubernetes API at {host}: {_reason(err)}; {HINT}"
    finally:
        api.close()
    return None
