"""params/original.yaml: the original analysis's settings, in one parameters file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from seglib import params, pipeline
from seglib.synthetic import write_dataset

ORIGINAL = Path(__file__).resolve().parent.parent / "params" / "original.yaml"


def test_original_params_name_valid_parameters():
    given = pipeline.load_params_file(ORIGINAL)
    assert set(given) <= set(params.names())
    checked = params.check_parameters(given)
    assert checked["engine"] == "original" and checked["method"] == "average" and checked["bases"] == "all"
    assert checked["n_clusters"] == 8 and checked["consolidate"] is False
    assert checked["hit_weighting"] is False


@pytest.mark.slow
def test_a_short_run_with_the_original_params(tmp_path):
    data, _ = write_dataset(tmp_path / "tiny.csv", n_customers=300, n_segments=4, random_state=5)
    result = pipeline.segment(data, out=tmp_path / "run", params_file=ORIGINAL, progress=False)
    segments = pd.read_csv(result.run_dir / "result.csv")
    assert segments["segment"].nunique() == 8  # the original's 8 clusters, not chosen from the data
    clustering = json.loads((result.run_dir / "processed" / "clustering.json").read_text())
    assert clustering["method"] == "average" and clustering["consolidate"] is False
    assert json.loads((result.run_dir / "run.json").read_text())["parameters"]["engine"] == "original"
