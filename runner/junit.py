"""JUnit XML, the report format CI systems read."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from greenpatch.runner.results import TestResult


def junit_xml(results: Iterable[TestResult], seconds: float, name: str = "greenpatch") -> bytes:
    results = list(results)
    suite = ET.Element(
        "testsuite",
        name=name,
        tests=str(len(results)),
        failures=str(sum(r.outcome == "failed" for r in results)),
        errors=str(sum(r.outcome == "error" for r in results)),
        skipped=str(sum(r.outcome == "skipped" for r in results)),
        time=f"{seconds:.3f}",
    )
    for result in results:
        path, _, rest = result.test_id.partition("::")
        module = path.removesuffix(".py").replace("/", ".")
        classname, _, test = rest.rpartition("::")
        case = ET.SubElement(
            suite,
            "testcase",
            classname=".".join(p for p in (module, classname.replace("::", ".")) if p),
            name=test or path,
            file=path,
            time=f"{result.seconds:.3f}",
        )
        first = (result.message.strip().splitlines() or [""])[-1][:200]
        if result.outcome in ("failed", "error", "skipped"):
            tag = {"failed": "failure", "error": "error", "skipped": "skipped"}[result.outcome]
            ET.SubElement(case, tag, message=first).text = result.message
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: Path, results: Iterable[TestResult], seconds: float) -> None:
    Path(path).write_bytes(junit_xml(results, seconds))
