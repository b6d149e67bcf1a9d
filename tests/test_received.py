"""recurrent_rl.received: the limits every loader applies to data read from files."""

from __future__ import annotations

import sys
import textwrap

import pytest
import yaml

from recurrent_rl.received import (
    ReceivedFileError,
    env_id_from_file,
    load_yaml,
    path_inside,
    read_text,
    shorten,
)

LAUGHS = textwrap.dedent(
    """\
    a: &a [x, x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
    i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
    """
)


def test_yaml_as_safe_load_reads_it():
    text = "env: pomdp/CartPoleNoVel-v1\nbase: &b {n: 1}\nother: *b\nlist: [1, 2.5, null, 'x']\n"
    assert load_yaml(text, "f.yaml") == yaml.safe_load(text)
    assert load_yaml("", "f.yaml") is None


def test_a_billion_laughs_is_refused_before_it_is_built():
    with pytest.raises(ReceivedFileError, match=r"f\.yaml: the YAML expands to more than 100,000 values"):
        load_yaml(LAUGHS, "f.yaml")
    # the same aliases, few enough uses: accepted, counted with every use
    small = "\n".join(LAUGHS.splitlines()[:4])
    assert len(load_yaml(small, "f.yaml")["d"]) == 10
    with pytest.raises(ReceivedFileError):
        load_yaml(small, "f.yaml", max_nodes=1000)  # d alone holds 10 + 100 + 1000 + 10000 values


def test_self_reference_and_deep_nesting_are_refused():
    with pytest.raises(ReceivedFileError, match="refers to a value that contains it"):
        load_yaml("a: &a [1, *a]\n", "f.yaml")
    with pytest.raises(ReceivedFileError, match="nests too deep"):
        load_yaml("[" * 100 + "]" * 100, "f.yaml")
    limit = sys.getrecursionlimit()
    with pytest.raises(ReceivedFileError, match="nests too deep"):
        load_yaml("[" * (limit + 10) + "]" * (limit + 10), "f.yaml")


def test_malformed_yaml_is_the_parsers_error():
    with pytest.raises(yaml.YAMLError):
        load_yaml("a: [1\n", "f.yaml")


def test_read_text_refuses_large_files_before_reading(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"{}" + b" " * 100)
    assert read_text(path, "model.json", limit=102).startswith("{}")
    with pytest.raises(ReceivedFileError, match=r"model\.json .* is 102 bytes, more than the 101"):
        read_text(path, "model.json", limit=101)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ReceivedFileError, match="not UTF-8"):
        read_text(path)


def test_an_env_id_from_a_file_never_imports_its_module(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    (tmp_path / "evil_env_module.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ReceivedFileError, match="module 'evil_env_module' Gymnasium would import"):
        env_id_from_file("evil_env_module:Evil-v0", "model.onnx (metadata env_id)")
    assert not marker.exists()
    assert "evil_env_module" not in sys.modules
    with pytest.raises(ReceivedFileError, match="not registered"):
        env_id_from_file("pomdp/NoSuchEnv-v0", "x")
    for bad in (None, 3, "", "x" * 500):
        with pytest.raises(ReceivedFileError):
            env_id_from_file(bad, "x")
    assert env_id_from_file("pomdp/CartPoleNoVel-v1", "x") == "pomdp/CartPoleNoVel-v1"
    assert env_id_from_file("my_pkg:MyEnv-v0", "x", trusted=True) == "my_pkg:MyEnv-v0"


def test_paths_named_in_a_file_stay_in_its_folder(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "encoder.pt").write_bytes(b"")
    (tmp_path / "elsewhere.pt").write_bytes(b"")
    assert path_inside(tmp_path / "run", "encoder.pt", "config.yaml") == (tmp_path / "run" / "encoder.pt").resolve()
    for name in ("../elsewhere.pt", str(tmp_path / "elsewhere.pt"), "a/../../elsewhere.pt", "", None, "a\0b"):
        with pytest.raises(ReceivedFileError):
            path_inside(tmp_path / "run", name, "config.yaml (encoder.path)")
    (tmp_path / "run" / "link.pt").symlink_to(tmp_path / "elsewhere.pt")
    with pytest.raises(ReceivedFileError, match="outside its folder"):
        path_inside(tmp_path / "run", "link.pt", "config.yaml")


def test_shorten_cuts_long_values():
    assert shorten("abc") == "'abc'"
    cut = shorten("x" * 10_000, 50)
    assert len(cut) < 80 and cut.endswith("(10002 characters)")
