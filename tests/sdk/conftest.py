"""A real ficus broker for the SDK tests: the built binary, started on free ports with its own
keys and database, stopped with SIGTERM afterwards."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ARM_RG = "/subscriptions/0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9/resourceGroups/rg-demo/providers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, directory: Path, api: int, mi: int, vm_extension: int, binary: str, env: dict):
        self.dir = directory
        self.vm_extension = f"http://127.0.0.1:{vm_extension}"  # the deprecated VM extension endpoint
        # The binary and the environment the broker was started with: another ficus command given
        # them uses the same registry.
        self.binary = binary
        self.env = env
        self.base = f"https://localhost:{api}"
        self.mi = f"http://127.0.0.1:{mi}"
        self.ca = str(directory / "keys" / "dev-ca.pem")
        self._admin_token = None

    def admin_token(self) -> str:
        if self._admin_token is None:
            creds = json.loads((self.dir / "keys" / "admin" / "demo.json").read_text())
            answer = requests.post(
                creds["token_endpoint"],
                data={
                    "grant_type": "client_credentials",
                    "client_id": creds["client_id"],
                    "client_secret": creds["client_secret"],
                    "scope": creds["scope"],
                },
                verify=self.ca,
                timeout=10,
            )
            answer.raise_for_status()
            self._admin_token = answer.json()["access_token"]
        return self._admin_token

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        answer = requests.request(
            method,
            self.base + path,
            headers={"Authorization": f"Bearer {self.admin_token()}"},
            json=body,
            verify=self.ca,
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json() if answer.content else {}


@pytest.fixture(scope="session")
def broker():
    binary = os.environ.get("FICUS_BIN", str(ROOT / "target" / "debug" / "ficus"))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        api, mi, vm_extension = free_port(), free_port(), free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "FICUS_SERVER__ADDR": f"127.0.0.1:{api}",
            "FICUS_SERVER__MI_ADDR": f"127.0.0.1:{mi}",
            "FICUS_SERVER__VM_EXTENSION_ADDR": f"127.0.0.1:{vm_extension}",
            "FICUS_KEYS__DIR": str(directory / "keys"),
            "FICUS_STORAGE__DATA_DIR": str(directory / "data"),
            "FICUS_WORLD__FILE": str(ROOT / "config" / "demo-world.toml"),
            "FICUS_LOG__LEVEL": "warn",
        }
        process = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        broker = Broker(directory, api, mi, vm_extension, binary, env)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError("ficus exited: " + process.stderr.read().decode())
            try:
                if requests.get(broker.base + "/readyz", verify=broker.ca, timeout=2).status_code == 200:
                    break
            except (requests.RequestException, OSError):
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("ficus did not become ready")
            time.sleep(0.1)
        yield broker
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def clean_identity_env(monkeypatch):
    """No managed-identity variables from the outside world leak into a test."""
    for name in [
        "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET",
        "IMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "MSAL_MANAGED_IDENTITY_ENDPOINT", "AZURE_CLIENT_ID",
    ]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
