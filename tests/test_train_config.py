"""Training options: YAML + command line, placeholders, typos, the saved config."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from pasero.cli.train import _train_parser, train_main
from pasero.errors import ConfigError
from pasero.model_config import CONFIG_FIELDS
from pasero.options import cli_values
from pasero.train_config import TrainConfig, load_config, save_config, train_fields

REQUIRED = dict(data_dir="results/toy/{pair}/bin", model_dir="results/toy/{pair}/train", source_lang="de",
                target_lang="en")


def test_yaml_then_command_line_with_placeholders_and_model_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**REQUIRED, "lr": "5e-4", "dropout": 0.2, "tokenizer": "tok/{src}{tgt}",
                                    "arch": "transformer_tiny", "adam-betas": [0.9, 0.99]}))
    parser = _train_parser()
    args, extra = parser.parse_known_args(["--dropout", "0.3", "--encoder-layers", "2", "--max-epochs", "null",
                                           "--valid-decode", "false", "--best-metric", "nll", "--lr=1e-3"])
    assert extra == []
    cfg = load_config(path, cli_values(args))
    assert cfg.data_dir == "results/toy/de-en/bin" and cfg.tokenizer == "tok/deen"
    assert cfg.lr == 1e-3 and cfg.max_epochs is None and cfg.valid_decode is False
    assert cfg.adam_betas == [0.9, 0.99]
    model = cfg.model_config()
    assert (model.dropout, model.encoder_layers, model.embed_dim) == (0.3, 2, 128)  # tiny's embed_dim kept


@pytest.mark.parametrize("key,suggestion", [("droput", "dropout"), ("learning_rate", None),
                                            ("max_step", "max_steps"), ("encoder-layer", "encoder_layers")])
def test_unknown_key_lists_close_matches(tmp_path, key, suggestion):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**REQUIRED, key: 1}))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"unknown option '{key}'" in str(e.value) and str(path) in str(e.value)
    if suggestion:
        assert f"did you mean {suggestion}" in str(e.value)


def test_command_line_typo_and_bad_values_exit_2(tmp_path, capsys):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(REQUIRED))
    for argv, message in [(["--warmpu", "10"], "did you mean warmup"),
                          (["--batch-size", "many"], "option 'batch_size' expects int"),
                          (["--best-metric", "accuracy"], "must be one of loss, nll, ppl, bleu, chrf"),
                          (["--arch", "transformer_huge"], "must be one of transformer_tiny"),
                          (["--valid-decode", "false"], "needs valid_decode: true"),
                          (["--dropout", "1.5"], "option 'dropout' must be in [0, 1); got 1.5"),
                          (["--heads", "0"], "option 'heads' must be positive; got 0")]:
        assert train_main(["-c", str(path), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(ConfigError, match="option 'model_dir' is required"):
        load_config(None, {"data_dir": "x", "source_lang": "de", "target_lang": "en"})


def test_saved_config_reloads_to_the_same_run(tmp_path):
    cfg = load_config(None, {**REQUIRED, "arch": "transformer_tiny", "heads": 2, "beam_size": 4})
    save_config(cfg, tmp_path)
    again = load_config(tmp_path / "config.yaml")
    assert dataclasses.replace(again, model_overrides={}) == dataclasses.replace(cfg, model_overrides={})
    assert again.model_config() == cfg.model_config() and again.model_config().heads == 2
    inference = yaml.safe_load((tmp_path / "inference.yaml").read_text())
    assert inference == {"beam_size": 4, "len_penalty": 1.0, "max_len_a": 1.2, "max_len_b": 10,
                         "source_lang": "de", "target_lang": "en", "bleu_tok": "13a", "lang_code": "none",
                         "lang_pairs": None}


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = capsys.readouterr().out
    for name in [f.name for f in train_fields()] + list(CONFIG_FIELDS):
        assert f"--{name.replace('_', '-')}" in out, name
    assert "--reset" in out and "--continue" in out
    assert TrainConfig().batch_size == 4096 and TrainConfig().adam_betas == [0.9, 0.98]


def test_help_shows_one_spelling_per_option_its_choices_and_the_default_architecture(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--max_steps" not in out and "--max-steps N" in out and "--lr X" in out
    assert "--best-metric {loss,nll,ppl,bleu,chrf}" in out
    assert "--ffn-dim N hidden dimension of the feed-forward layers (default: 1024)" in out  # transformer_small
    args, extra = _train_parser().parse_known_args(["-s", "de", "-t", "en"])  # Pasero's short flags
    assert extra == [] and cli_values(args) == {"source_lang": "de", "target_lang": "en"}
