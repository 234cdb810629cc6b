"""`ficus sandbox`: the official SDKs find IMDS at 169.254.169.254 with no endpoint configured, as
on an Azure VM, inside a network namespace served by a broker on the fixture broker's registry. The
tokens are validated outside, through the fixture broker's discovery and JWKS: the same keys."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ARM_RG, ROOT
from test_managed_identity import mirid, validated_claims

NODE_DIR = ROOT / "tests" / "node"
RUST_BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "azure-sdk-rust"

PYTHON_MI = """
import sys
import time
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
credential = DefaultAzureCredential() if sys.argv[1] == "default" else ManagedIdentityCredential()
print(credential.get_token("api://vault/.default").token, end="")
"""


def sandbox(broker, *command: str, resource: str | None = None, extra_env: dict | None = None):
    """Runs COMMAND in `ficus sandbox` with the broker's settings and a clean environment: no
    managed-identity endpoint variable is set, by the test or by the sandbox."""
    env = dict(broker.env)
    env["HOME"] = os.environ.get("HOME", "/root")
    env.update(extra_env or {})
    args = [broker.binary, "sandbox"] + (["--resource", resource] if resource else []) + ["--", *command]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def vm_demo(broker) -> dict:
    return broker.admin("GET", ARM_RG + "/Microsoft.Compute/virtualMachines/vm-demo")


def assert_vm_demo_token(broker, token: str):
    vm = vm_demo(broker)
    claims = validated_claims(broker, token, "api://vault")
    assert claims["oid"] == vm["identity"]["principalId"]
    assert claims["xms_mirid"] == mirid(vm["id"])
    assert claims["roles"] == ["Secrets.Read"]


@pytest.mark.parametrize("kind", ["managed", "default"])
def test_python_azure_identity_finds_imds_at_its_real_address(broker, kind):
    run = sandbox(broker, sys.executable, "-c", PYTHON_MI, kind)
    assert run.returncode == 0, run.stderr
    assert_vm_demo_token(broker, run.stdout)


def node_ready() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (scripts/test installs it)"
    if not (NODE_DIR / "node_modules" / "@azure" / "identity").is_dir():
        return "tests/node has no node_modules (scripts/test runs npm ci there)"
    return None


def probes(broker) -> int:
    """IMDS requests without the Metadata header (what an SDK's probe sends), as the sign-in log counts them."""
    entries = broker.admin("GET", "/v1.0/auditLogs/signIns?result=failure&$top=1000")["value"]
    return sum(e["ficusRequestCount"] for e in entries if e["ficusErrorCode"] == "missing_metadata_header")


@pytest.mark.parametrize("kind", ["managed", "default"])
def test_node_azure_identity_finds_imds_at_its_real_address_probe_included(broker, kind):
    if (missing := node_ready()) is not None:
        pytest.fail(missing)
    before = probes(broker)
    run = sandbox(broker, "node", str(NODE_DIR / "managed-identity.mjs"), kind)
    assert run.returncode == 0, run.stderr
    assert_vm_demo_token(broker, run.stdout)
    if kind == "default":
        # DefaultAzureCredential first probes IMDS without the Metadata header and takes IMDS's
        # 400 as "IMDS is there". The sign-in log shows the probe.
        deadline = time.monotonic() + 10
        while probes(broker) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert probes(broker) > before


def test_rust_azure_identity_finds_imds_at_its_real_address(broker):
    assert RUST_BIN.is_file(), f"{RUST_BIN} is missing: scripts/test builds the azure-sdk-rust crate"
    run = sandbox(broker, str(RUST_BIN))
    assert run.returncode == 0, run.stderr
    assert_vm_demo_token(broker, run.stdout)


def test_the_command_sees_no_endpoint_variables_and_its_exit_status_is_the_sandboxes(broker):
    leaked = {"IDENTITY_ENDPOINT": "http://elsewhere", "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://elsewhere",
              "MSAL_MANAGED_IDENTITY_ENDPOINT": "http://elsewhere", "MSI_ENDPOINT": "http://elsewhere"}
    script = "env | sort; ip -brief address; exit 7"
    run = sandbox(broker, "sh", "-c", script, extra_env=leaked)
    assert run.returncode == 7, run.stderr
    names = {line.split("=", 1)[0] for line in run.stdout.splitlines() if "=" in line}
    assert not names & set(leaked), run.stdout
    assert {"AZURE_AUTHORITY_HOST", "AZURE_TENANT_ID", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"} <= names
    assert "169.254.169.254/32" in run.stdout, "IMDS's address is on the namespace's loopback"

    host = subprocess.run(["ip", "-brief", "address"], capture_output=True, text=True, check=True).stdout
    assert "169.254.169.254" not in host, "the host's interfaces are untouched"


def test_a_missing_command_or_resource_is_reported_with_the_shells_statuses(broker):
    missing = sandbox(broker, "/no/such/command")
    assert missing.returncode == 127, missing.stderr
    assert "cannot run /no/such/command" in missing.stderr
    unknown = sandbox(broker, "true", resource="vm-nowhere")
    assert unknown.returncode == 2, unknown.stderr
    assert "server.imds_resource: no compute resource named 'vm-nowhere'" in unknown.stderr


def test_an_unprivileged_user_gets_the_sandbox_through_a_user_namespace(broker):
    """As root the sandbox needs only a network namespace; anyone else gets it inside a user
    namespace of their own. Run as `nobody`, with a broker of its own (it may not read root's)."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: every other sandbox test takes the user-namespace path")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        home.chmod(0o777)
        binary = home / "ficus"
        shutil.copy(broker.binary, binary)
        shutil.copy(ROOT / "config" / "demo-world.toml", home / "world.toml")
        for path in (binary, home / "world.toml"):
            path.chmod(0o755)
        env = {**broker.env, "FICUS_KEYS__DIR": str(home / "keys"), "FICUS_STORAGE__DATA_DIR": str(home / "data"),
               "FICUS_WORLD__FILE": str(home / "world.toml")}
        imds = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault"
        script = f"id -u; curl -sf -H Metadata:true '{imds}'"
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        run = subprocess.run(
            [*nobody, str(binary), "sandbox", "--", "sh", "-c", script],
            env=env, cwd=home, capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 0, run.stderr
        uid, answer = run.stdout.split("\n", 1)
        assert uid == "65534", "COMMAND keeps its own uid inside"
        assert '"token_type":"Bearer"' in answer and '"resource":"api://vault"' in answer, answer
        assert (home / "data" / "ficus.db").stat().st_uid == 65534, "what the broker wrote belongs to the user"


def forbid_unshare():
    """In the child, before exec: a seccomp filter that fails unshare(2) with EPERM, as a
    container runtime's default profile does (x86_64 system call numbers)."""
    import ctypes

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    unshare, eperm = 272, 1
    filters = (Filter * 4)(
        Filter(0x20, 0, 0, 0),  # load the system call number
        Filter(0x15, 0, 1, unshare),  # unshare?
        Filter(0x06, 0, 0, 0x00050000 | eperm),  # then fail with EPERM
        Filter(0x06, 0, 0, 0x7FFF0000),  # else allow
    )
    program = Program(len(filters), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    no_new_privs, set_seccomp, mode_filter = 38, 22, 2
    if libc.prctl(no_new_privs, 1, 0, 0, 0) != 0 or libc.prctl(set_seccomp, mode_filter, ctypes.byref(program), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot install the seccomp filter")


def test_where_namespaces_are_forbidden_the_sandbox_says_so_and_exits_125(broker):
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the seccomp filter in this test uses x86_64 system call numbers")
    run = subprocess.run(
        [broker.binary, "sandbox", "--", "true"],
        env=dict(broker.env), capture_output=True, text=True, timeout=60, preexec_fn=forbid_unshare,
    )
    assert run.returncode == 125, run.stderr
    assert "cannot create a network namespace (Operation not permitted)" in run.stderr, run.stderr
    assert "Run ficus sandbox as root, or allow them" in run.stderr, run.stderr
