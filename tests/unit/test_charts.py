"""Inline SVG charts (``modelwerk.charts``) and the drift report's notebook view built on them."""

from __future__ import annotations

import doctest
import xml.etree.ElementTree as ET

import pytest

from modelwerk import charts
from modelwerk.monitoring import DriftReportView, MonitorResult


def test_the_module_examples_hold():
    assert doctest.testmod(charts, raise_on_error=False).failed == 0


def test_a_distribution_chart_is_well_formed_svg_with_escaped_labels_and_heights_in_proportion():
    svg = charts.distribution_svg("site <b>", ["<= 1", "a & b", "__other__"], [0.5, 0.5, 0.0], [0.25, 0.25, 0.5])
    root = ET.fromstring(svg)  # parses: labels are escaped
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.find("{http://www.w3.org/2000/svg}title")
            is not None]
    heights = [float(r.get("height")) for r in bars]
    assert len(bars) == 6 and heights[0] == pytest.approx(2 * heights[1]) and heights[4] == 0.0
    with pytest.raises(ValueError, match="same, non-zero length"):
        charts.distribution_svg("x", ["a"], [1.0], [0.5, 0.5])


def test_the_drift_view_plots_only_the_drifted_features_worst_first():
    shape = {"labels": ["a", "b"], "baseline": [0.5, 0.5], "current": [0.9, 0.1]}
    result = MonitorResult(
        endpoint="pump-health", window={"start": "s", "end": "e"}, rows=10, bad_lines=0, worst={},
        quality=None, report_uri=None,
        features={"quiet": {"psi": 0.01, "ks": 0.1, "js": 0.01, "missing_rate": 0.0},
                  "mild": {"psi": 0.3, "ks": 0.2, "js": 0.1, "missing_rate": 0.0},
                  "loud": {"psi": 0.9, "ks": 0.5, "js": 0.4, "missing_rate": 0.0},
                  "absent": {"psi": None, "ks": None, "js": None, "missing_rate": None}},
        distributions={"quiet": shape, "mild": shape, "loud": shape})
    page = DriftReportView(result)._repr_html_()
    assert page.count("<svg") == 4 + 2
    assert page.index(">loud (PSI 0.90)") < page.index(">mild (PSI 0.30)") and ">quiet (PSI" not in page
    assert "(PSI" not in DriftReportView(result, threshold=1.0).plots()
