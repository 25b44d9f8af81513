"""Run parameters are defined once (seglib.params) and checked before any work, the same way by
``seglib run`` and ``seglib segment``.

Everything here derives from the registry: a parameter added to ``PARAMETERS`` is checked through
both commands, against the notebooks' ``parameters`` cells, the step signatures and the README
without a new test.
"""

from __future__ import annotations

import ast
import inspect

import pytest
import yaml

from seglib import distributed, params, pipeline, runner, steps
from seglib.cli import main
from seglib.config import PROJECT_ROOT
from seglib.errors import ParameterError

PARAMS = params.PARAMETERS
COMMANDS = ("run", "segment")


# ---- the registry itself ------------------------------------------------------------------------


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: p.name)
def test_every_default_passes_its_own_check(p):
    assert p.step in params.STEPS and p.kind in params.KINDS
    assert p.help and "\n" not in p.help
    assert params.check_parameter(p.name, params.default(p.name)) == p.default


def test_defaults_are_fresh_copies():
    shape = params.default("map_shape")
    shape.append(99)
    assert params.default("map_shape") != shape


def test_effective_fills_every_default_and_checks_the_rest():
    values = params.effective({"n_clusters": 5.0})
    assert list(values) == params.names()
    assert values["n_clusters"] == 5 and isinstance(values["n_clusters"], int)
    assert {k: v for k, v in values.items() if k != "n_clusters"} == {
        k: v for k, v in params.defaults().items() if k != "n_clusters"}
    with pytest.raises(ParameterError, match="min_age <= max_age"):
        params.effective({"min_age": 50, "max_age": 40})
    with pytest.raises(ParameterError, match="unknown parameter 'n_cluster'.*n_clusters"):
        params.effective({"n_cluster": 5})


@pytest.mark.parametrize("value, text", [(None, "null"), (True, "true"), ([15, 10], "[15, 10]"),
                                         ("ward", "ward"), (1.5, "1.5"), ({"a": "b"}, "{a: b}")])
def test_as_yaml_reads_back_as_the_value(value, text):
    assert params.as_yaml(value) == text
    assert yaml.safe_load(text) == value


# ---- one definition: notebooks, signatures, README ------------------------------------------------


@pytest.fixture(scope="module")
def declared():
    return pipeline.declared_parameters()


def test_notebooks_declare_registry_parameters_with_the_registry_default(declared):
    for nb, declared_params in declared.items():
        for name, spec in declared_params.items():
            if name in pipeline.RUNNER_PARAMETERS:
                continue
            assert name in params.names(), f"{nb} declares {name!r}, which seglib.params does not define"
            assert ast.literal_eval(spec["default"]) == params.default(name), (nb, name)


def test_every_parameter_is_declared_by_some_notebook(declared):
    """Every parameter is valid in both commands, so ``seglib run`` must pass it to a notebook."""
    everywhere = {name for declared_params in declared.values() for name in declared_params}
    assert not set(params.names()) - everywhere


def test_run_segmentation_takes_exactly_the_registry_parameters_with_their_defaults():
    """Every segmentation parameter; the tracking ones (step "track") go to pipeline.track_step."""
    sig = inspect.signature(runner.run_segmentation).parameters
    keywords = {n: p.default for n, p in sig.items()
                if p.kind is p.KEYWORD_ONLY and n not in ("backend", "progress", "on_step")}
    segmentation = {n: v for n, v in params.defaults().items() if params.by_name(n).step != "track"}
    assert set(keywords) == set(segmentation)
    assert keywords == segmentation
    tracking = inspect.signature(pipeline.track_step).parameters
    assert {n: tracking[n].default for n in params.defaults("track")} == params.defaults("track")


@pytest.mark.parametrize("function", [steps.clean_step, steps.som_step, steps.cluster_step])
def test_step_signatures_use_the_registry_defaults(function):
    shared = {n: p.default for n, p in inspect.signature(function).parameters.items() if n in params.names()}
    assert shared, function.__name__
    assert shared == {n: params.default(n) for n in shared}


@pytest.mark.parametrize("step", ["clean", "som", "cluster", "profile"])
def test_each_step_takes_its_registry_parameters(step):
    """The runner passes each step the registry's parameters of that step (``params.defaults(step)``)."""
    function = {"clean": steps.clean_step, "som": steps.som_step, "cluster": steps.cluster_step,
                "profile": steps.profile_step}[step]
    assert set(params.defaults(step)) <= set(inspect.signature(function).parameters)


def test_the_dask_backend_takes_the_registry_parameters_by_name(tmp_path):
    """The Dask steps take ``**parameters`` and check them against the registry first."""
    for function in (runner.run_dask, distributed.clean_dask, distributed.cluster_dask):
        kinds = {p.kind for p in inspect.signature(function).parameters.values()}
        assert inspect.Parameter.VAR_KEYWORD in kinds
        assert not set(inspect.signature(function).parameters) & set(params.names())
    with pytest.raises(ParameterError, match="unknown parameter 'n_cluster'"):
        runner.run_dask(tmp_path, tmp_path / "run", n_cluster=4)
    with pytest.raises(ParameterError, match="n_epochs"):
        runner.run_dask(tmp_path, tmp_path / "run", n_epochs=0)
    assert not (tmp_path / "run").exists()  # nothing started nor written


def test_the_readme_table_is_current():
    """Regenerate with ``python -m seglib.params --update-readme``."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert params.readme_with_table(text) == text, "run: python -m seglib.params --update-readme"
    for name in params.names():
        assert f"| `{name}` |" in text


def test_readme_table_replaces_only_the_marked_part():
    start, end = params.README_MARKERS
    text = f"# x\n\nbefore\n{start}\nold table\n{end}\nafter\n"
    new = params.readme_with_table(text)
    assert new.startswith("# x\n\nbefore\n") and new.endswith(f"{end}\nafter\n")
    assert "old table" not in new and params.parameters_table() in new
    assert params.readme_with_table(new) == new
    with pytest.raises(ValueError, match="parameters:start"):
        params.readme_with_table("no markers")


def test_both_commands_list_the_same_parameters(capsys):
    assert main(["run", "--list-parameters"]) == 0
    listed_run = capsys.readouterr().out
    assert main(["segment", "--list-parameters"]) == 0
    listed_segment = capsys.readouterr().out
    assert listed_run == listed_segment
    for p in PARAMS:
        assert f"  {p.name} = {params.as_yaml(p.default)}  ({p.expected()})" in listed_run
        assert p.help in listed_run


def test_both_commands_accept_the_same_set():
    values = params.defaults()
    assert pipeline.check_parameters(values, "run") == pipeline.check_parameters(values, "segment") == values
    assert pipeline.valid_parameters() == params.names()


# ---- checked before any work: one line, status 2, no run folder ------------------------------------


def wrong_values(p: params.Param) -> list[str]:
    """Command-line texts that must be refused for ``p`` (derived from its kind, bounds and choices)."""
    by_kind = {
        "int": ["abc", "1.5", "[1, 2]"],
        "float": ["abc", "[1, 2]", "true"],
        "bool": ["maybe", "2"],
        "str": ["[1, 2]", "12"] + (["no-such-choice"] if p.choices else []),
        "date": ["yesterday", "2020-13-45", "12"],
        "mapping": ["[1, 2]", "abc"],
        "shape": ["abc", "[0, 3]", "[15]", "[1.5, 2]"],
        "list": ["12", "{a: b}"],
    }
    if p.kind not in by_kind:
        pytest.fail(f"no wrong value known for kind {p.kind!r} of {p.name!r}: add one to wrong_values()")
    texts = list(by_kind[p.kind])
    step = 1 if p.kind == "int" else 0.5
    if p.minimum is not None:
        texts.append(str(p.minimum - step))
    if p.maximum is not None:
        texts.append(str(p.maximum + step))
    if p.above is not None:
        texts.append(str(p.above))
    if not p.nullable:
        texts.append("null")
    return texts


CASES = [(p.name, text) for p in PARAMS for text in wrong_values(p)]


def _command(command, tmp_path, *extra):
    data = tmp_path / "tx.csv"  # never read: the parameters are checked first
    return [command, "--data", str(data), "--out", str(tmp_path / "run"), "--no-progress", *extra]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name, text", CASES, ids=[f"{n}={t}" for n, t in CASES])
def test_a_wrong_value_is_one_line_with_status_2_before_any_work(command, name, text, tmp_path, capsys):
    assert main(_command(command, tmp_path, "-p", name, text)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if not line.startswith(("INFO", "WARNING"))]
    assert len(err) == 1, err
    assert name in err[0] and repr(pipeline.parse_value(text)) in err[0] and "expected" in err[0], err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_value_in_a_params_file_is_refused_the_same_way(command, tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("n_clusters: 6\nseed: abc\n")
    assert main(_command(command, tmp_path, "--params-file", str(f))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed='abc'" in err and "integer" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("text, line", [("n_clusters: 5\nmap_shape: [10, 12\n", 3),
                                        ("n_clusters: 5\n  seed: 1\n", 2),
                                        ("a: 1\nb: 'open\n", 3), ("seed: 1\nas_of: 2020-13-45\n", None)])
def test_a_params_file_that_is_not_yaml_is_one_line_with_its_line(command, text, line, tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    assert main(_command(command, tmp_path, "--params-file", str(f))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(f) in err and "Traceback" not in err
    assert line is None or f"line {line}," in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name, word", [("n_clusterz", "valid parameters"), ("out_dir", "--out"),
                                        ("backend", "--backend")])
def test_names_that_are_not_parameters(command, name, word, tmp_path, capsys):
    assert main(_command(command, tmp_path, "-p", name, "4")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and name in err and word in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name, text, word", [("columns", "{customer_idd: cust}", "customer_idd"),
                                              ("columns", "{amount: null}", "required"),
                                              ("columns", "{amount: 5}", "column name")])
def test_steps_own_checks_run_before_any_work_too(command, name, text, word, tmp_path, capsys):
    assert main(_command(command, tmp_path, "-p", name, text)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err, err
    assert not (tmp_path / "run").exists()


def test_dask_trains_the_batch_engine_only():
    with pytest.raises(ParameterError, match="engine='minisom'.*batch"):
        runner.check_backend("dask", engine="minisom")
    assert runner.check_backend("pandas", engine="minisom") == "pandas"
