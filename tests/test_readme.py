"""The README's examples are what a new user copies first: its YAML must parse and its config
snippets must pass the workflow's schema."""

import re
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[1]


def yaml_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```ya?ml\n(.*?)^```", text, re.S | re.M)


def test_every_yaml_block_of_the_readme_is_valid_config():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    blocks = yaml_blocks()
    assert blocks, "the README has no YAML example"
    for block in blocks:
        snippet = yaml.safe_load(block)  # a flow mapping holding `{lang}` would fail here
        assert isinstance(snippet, dict), block
        jsonschema.validate(snippet, schema)


def test_the_readme_s_own_corpus_keeps_its_lang_placeholders():
    (snippet,) = [yaml.safe_load(b) for b in yaml_blocks() if "source: local" in b]
    files = snippet["corpora"]["mine"]["files"]
    assert files["train"] == "/data/mine/train.{lang}" and set(files) == {"train", "valid", "test"}
