"""Check the PrometheusRule with promtool and run its unit tests (*.test.yaml here).

fleet_scenarios.py writes fleet.test.yaml (a fleet of three, as scenarios).
promtool reads plain rule files, so the rule groups are taken from the custom resource's `spec`
into a temporary directory beside copies of the tests: `rules.yaml` as shipped, and
`rules-labels.yaml` without annotations, for the tests that check which alerts fire and with what
labels (their texts are checked once, in annotations.test.yaml). Usage: `make alerts`, or
`python k8s/monitoring/tests/promtool.py [PROMTOOL]`; exit code 0 when every check passes.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet_scenarios  # noqa: E402 (beside this file)

HERE = Path(__file__).resolve().parent
RULE = HERE.parent / "prometheus-rule.yaml"
TESTS = sorted(HERE.glob("*.test.yaml"))


def without_annotations(spec: dict[str, object]) -> dict[str, object]:
    bare = copy.deepcopy(spec)
    for group in bare["groups"]:  # type: ignore[attr-defined]
        for rule in group["rules"]:
            rule.pop("annotations", None)
    return bare


def run(promtool: str) -> int:
    with tempfile.TemporaryDirectory(prefix="promtool-") as tmp:
        work = Path(tmp)
        spec = yaml.safe_load(RULE.read_text())["spec"]
        (work / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        (work / "rules-labels.yaml").write_text(
            yaml.safe_dump(without_annotations(spec), sort_keys=False)
        )
        for test in TESTS:
            shutil.copy(test, work / test.name)
        fleet = work / "fleet.test.yaml"
        fleet.write_text(yaml.safe_dump(fleet_scenarios.document(), sort_keys=False))
        names = [*(t.name for t in TESTS), fleet.name]
        commands = [["check", "rules", "rules.yaml"], ["test", "rules", *names]]
        for command in commands:
            done = subprocess.run([promtool, *command], cwd=work, check=False)
            if done.returncode != 0:
                return done.returncode
    return 0


if __name__ == "__main__":
    promtool = sys.argv[1] if len(sys.argv) > 1 else shutil.which("promtool")
    if promtool is None:
        sys.exit("promtool not found: install Debian's prometheus package")
    sys.exit(run(promtool))
