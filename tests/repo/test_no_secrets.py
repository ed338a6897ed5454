"""No secret in the repository: Datadog's keys and passwords come from the environment only.

detect-secrets (pinned in requirements.txt) scans every file git tracks; a false positive is marked
where it stands with a `pragma: allowlist secret` comment saying why.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(sys.executable).parent / "detect-secrets-hook"


def tracked_files():
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [f for f in listed.stdout.splitlines() if (ROOT / f).is_file()]


# Not secrets, in examples written from real runs (docs/local.md, docs/service.md): the service's SQL hex
# literals of text (`_utf8mb4 X'6C6F...'`: every byte printable ASCII, 0x20-0x7F, which random key
# material almost never is: (96/256)^16 for 16 bytes), and W3C traceparents in DBM comments.
NOT_SECRETS = r"^(?:[2-7][0-9A-F])+$|^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$"

# A Datadog-API-key-shaped value, assembled so that this file itself holds nothing that looks like a key.
FAKE_KEY = "c3a1f09b" + "7d2e4c58" + "a6b1f3e8" + "d9024a7b"


def test_no_tracked_file_holds_a_secret():
    result = subprocess.run([str(HOOK), "--exclude-secrets", NOT_SECRETS, *tracked_files()], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_exclusions_keep_real_looking_keys():
    """A hex key, upper or lower case, is still found with the exclusions on."""
    for key in (FAKE_KEY, FAKE_KEY.upper()):
        assert not re.search(NOT_SECRETS, key), key
    assert re.search(NOT_SECRETS, "loadgen/0.1.0".encode().hex().upper())


def test_the_scanner_finds_a_planted_secret(tmp_path):
    planted = tmp_path / "settings.py"
    fake_aws = "AKIA" + "Z3MHKQ5T" + "7RBXW2YD"
    planted.write_text(f'datadog_api_key = "{FAKE_KEY}"\naws = "{fake_aws}"\n')
    result = subprocess.run([str(HOOK), "--exclude-secrets", NOT_SECRETS, str(planted)], capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert "AWS Access Key" in result.stdout
    assert "Hex High Entropy String" in result.stdout


def test_env_file_is_ignored_and_not_tracked():
    assert ".env" not in tracked_files()
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0
