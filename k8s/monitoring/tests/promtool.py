"""Check the PrometheusRule with promtool and run its unit tests (alerts.test.yaml).

promtool reads plain rule files, so the rule groups are taken from the custom resource's `spec`
into a temporary directory beside a copy of the tests. Usage: `make alerts`, or
`python k8s/monitoring/tests/promtool.py [PROMTOOL]`; exit code 0 when every check passes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULE = HERE.parent / "prometheus-rule.yaml"
TESTS = HERE / "alerts.test.yaml"


def run(promtool: str) -> int:
    with tempfile.TemporaryDirectory(prefix="promtool-") as tmp:
        work = Path(tmp)
        spec = yaml.safe_load(RULE.read_text())["spec"]
        (work / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        shutil.copy(TESTS, work / TESTS.name)
        for command in (["check", "rules", "rules.yaml"], ["test", "rules", TESTS.name]):
            done = subprocess.run([promtool, *command], cwd=work, check=False)
            if done.returncode != 0:
                return done.returncode
    return 0


if __name__ == "__main__":
    promtool = sys.argv[1] if len(sys.argv) > 1 else shutil.which("promtool")
    if promtool is None:
        sys.exit("promtool not found: install Debian's prometheus package")
    sys.exit(run(promtool))
