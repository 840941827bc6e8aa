"""Renderings of the report: the terminal table and the HTML page with its SVG charts."""

import xml.etree.ElementTree as ElementTree

import numpy as np

from experiments.rendering import render_html, render_table
from experiments.report import build_report
from tests.experiment_builders import samples
from tests.experiment_builders import speed_experiment as experiment


def test_table_shows_the_decision_and_every_variant():
    rng = np.random.default_rng(12)
    text = render_table(build_report(experiment(), {"a": samples(rng, 2000), "b": samples(rng, 2000, slower_ms=2)}))
    assert text.startswith("Experiment speed") and "Decision: KEEP CONTROL" in text
    assert "a (control)" in text and "yolo-fast@1.0.0" in text


def test_html_embeds_well_formed_svg_histograms_and_box_plots():
    rng = np.random.default_rng(13)
    page = render_html(build_report(experiment(), {"a": samples(rng, 2000), "b": samples(rng, 2000)}))
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    svgs = [chunk.split("</svg>")[0] + "</svg>" for chunk in page.split("<svg")[1:]]
    assert len(svgs) == 8  # histogram and box plot for 4 metrics
    for svg in svgs:
        ElementTree.fromstring("<svg" + svg)
