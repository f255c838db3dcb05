# What the rules share: checking the config, resolving an experiment's settings, and the paths and
# command-line options derived from them. An experiment is results/{corpus}/{exp}/ where exp is a
# language pair `src-tgt` or a named variant of it `src-tgt.variant`.

import functools
import math
import os
import re
import shlex
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError

from pasero import grid, multilingual, train_config
from pasero.download import direction_urls
from pasero.errors import ConfigError, did_you_mean
from pasero.files import expand_langs

SCHEMA = yaml.safe_load((Path(workflow.basedir) / "schemas" / "config.schema.yaml").read_text())


# Config --------------------------------------------------------------------------------------


def check(instance, where="", definition=None):
    """Check `instance` against the schema (or one of its $defs); the error is one line naming the key."""
    schema = {"$defs": SCHEMA["$defs"], "$ref": f"#/$defs/{definition}"} if definition else SCHEMA
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    if error is None:
        return
    key = "/".join(str(p) for p in error.absolute_path)
    message = error.message
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in known]
        hint = (did_you_mean(unknown[0], known) if unknown else "") or f"known keys: {', '.join(known)}"
        message = f"unknown key '{unknown[0]}'; {hint}"
    raise WorkflowError(f"config/config.yaml, {where}{key}: {message}")


class StrictLoader(yaml.SafeLoader):
    """YAML as Snakemake reads it, but a key written twice in one mapping is an error, not a silent
    override (a merge key `<<:` may still be overridden: that is what it is for)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise WorkflowError(
                    f"{key_node.start_mark.name}:{line}: duplicate key '{key_node.value}' (first at line "
                    f"{seen[key_node.value]}); keep one of them"
                )
            seen[key_node.value] = line
        return super().construct_mapping(node, deep)


def check_train_settings(settings, where):
    """What the schema cannot say (an embed_dim that heads does not divide): pasero-train's own checks."""
    try:
        train_config.check_settings(settings, f"config/config.yaml, {where}")
    except ConfigError as e:
        raise WorkflowError(str(e)) from None


def check_config_file(path):
    """Fail on a YAML error or a duplicate key with the file, line and column, before Snakemake's
    own loader, whose message gives neither."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        try:
            yaml.load(f, Loader=StrictLoader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
            raise WorkflowError(
                f"{where}: invalid YAML ({e.problem or e.context}); quote values that contain {{ }} [ ] : or #"
            ) from None


FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def read_numbers(value):
    """YAML 1.1 reads `2e-3` (no dot) as a string; a researcher means the number."""
    if isinstance(value, dict):
        return {k: read_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [read_numbers(v) for v in value]
    if isinstance(value, str) and FLOAT.fullmatch(value):
        return float(value)
    return value


def merge(base, override):
    """`base` updated recursively with `override` (neither is modified)."""
    out = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def corpus_config(corpus):
    corpora = config["corpora"]
    if corpus not in corpora:
        raise WorkflowError(f"unknown corpus '{corpus}'; config/config.yaml defines: {', '.join(corpora)}")
    return corpora[corpus]


@functools.cache
def experiment(corpus, name):
    """Resolved settings of results/{corpus}/{name}/: a language pair's or a multilingual one's."""
    if name.partition(".")[0] in corpus_config(corpus).get("multilingual", {}):
        return multilingual_experiment(corpus, name)
    return pair_experiment(corpus, name)


def pair_experiment(corpus, name):
    """Resolved settings of results/{corpus}/{name}/, plus its corpus, pair, languages and variant.

    From weakest to strongest: `defaults` (filled with the schema's defaults), the corpus's
    `settings`, the pair's entry in `pairs`, the variant, and a `pair.variant` entry in `pairs`.
    """
    cfg = corpus_config(corpus)
    pairs = cfg["pairs"]
    pair, _, variant = name.partition(".")
    known_pairs = sorted({p.partition(".")[0] for p in pairs})
    if pair not in known_pairs:
        raise WorkflowError(
            f"corpus '{corpus}' has no pair '{pair}'; config/config.yaml lists: {', '.join(known_pairs)} "
            f"(add it under corpora: {corpus}: pairs:)"
        )
    if variant and variant not in config["variants"] and name not in pairs:
        raise WorkflowError(
            f"unknown variant '{variant}' in '{name}'; config/config.yaml defines: "
            f"{', '.join(config['variants']) or 'none'} (under variants:)"
        )
    settings = config["defaults"]
    for layer in (
        cfg.get("settings"),
        pairs.get(pair),
        config["variants"].get(variant) if variant else None,
        pairs.get(name) if variant else None,
    ):
        settings = merge(settings, layer)
    where = f"corpora/{corpus}/pairs/{name} (resolved settings)/"
    check(settings, where, "settings")
    check_train_settings(settings["train"], f"{where}train")
    src, tgt = pair.split("-")
    return dict(
        corpus=corpus,
        name=name,
        pair=pair,
        src=src,
        tgt=tgt,
        variant=variant,
        test_sets=["test", *cfg["test_sets"]],
        **settings,
    )


def experiments():
    """(corpus, name) of every experiment listed in the config: the default target. A listed
    `{pair}.{grid}` stands for every point of the grid."""
    return [
        (corpus, point)
        for corpus, cfg in config["corpora"].items()
        for name in [*cfg.get("pairs", {}), *cfg.get("multilingual", {})]
        for point in grid_experiments(name)
    ]


GRID_POINTS = {}  # variant name -> grid.GridPoint, for the variants that grids: generates


def add_grid_variants():
    """Every point of every grid becomes a variant (checked like the others by check_experiments)."""
    try:
        points = grid.expand_all(config["grids"], config["variants"])
    except ConfigError as e:
        raise WorkflowError(f"config/config.yaml, {e}") from None
    for point in points:
        config["variants"][point.name] = point.overrides
        GRID_POINTS[point.name] = point


def grid_experiments(name):
    base, _, variant = name.partition(".")
    if variant in config["grids"]:
        return [f"{base}.{point.name}" for point in GRID_POINTS.values() if point.grid == variant]
    return [name]


def check_experiments():
    """Resolve every listed experiment and every variant, so that a typo fails before any job."""
    for corpus, name in experiments():
        experiment(corpus, name)
    for variant, overrides in config["variants"].items():
        settings = merge(config["defaults"], overrides)
        check(settings, f"variants/{variant}/", "settings")
        check_train_settings(settings["train"], f"variants/{variant}/train")


def scored_experiments():
    """The listed experiments whose scores.json exists: what a report of a partial run shows."""
    return [(c, n) for c, n in experiments() if os.path.exists(f"results/{c}/{n}/scores.json")]


def report_experiments(scope):
    return experiments() if scope == "all" else scored_experiments()


def get_report_scores(wildcards):
    return [f"results/{c}/{n}/scores.json" for c, n in report_experiments(wildcards.scope)]


def get_report_trainings(wildcards):
    return [f"results/{c}/{n}/train/done" for c, n in report_experiments(wildcards.scope)]


def get_report_names(wildcards):
    return [f"{c}/{n}" for c, n in report_experiments(wildcards.scope)]


def get_report_metrics(wildcards):
    return [f"results/{c}/{n}/train/train.jsonl" for c, n in report_experiments(wildcards.scope)]


def get_scored_plots(wildcards):
    multi = multilingual_experiments()
    return [f"results/{c}/{n}/learning_curve.svg" for c, n in scored_experiments()] + [
        f"results/{c}/{n}/directions.svg" for c, n in scored_experiments() if (c, n) in multi
    ]


# Paths and options -----------------------------------------------------------------------------


def exp(wildcards):
    return experiment(wildcards.corpus, wildcards.exp)


def text_dir(e):
    """Clean text is shared by every variant of a pair."""
    return f"results/{e['corpus']}/{e['pair']}/text"


def get_train_text(wildcards):
    """Both sides of the training text (of every direction of a multilingual experiment, each
    language pair once: pasero-build-tokenizer groups the files by language)."""
    e = exp(wildcards)
    if e.get("multilingual"):
        pairs = dict.fromkeys(text_pair(e, direction) for direction in e["directions"])
        return [f"results/{e['corpus']}/{pair}/text/train.{lang}" for pair in pairs for lang in pair.split("-")]
    return [f"{text_dir(e)}/train.{e['src']}", f"{text_dir(e)}/train.{e['tgt']}"]


def data_dir(e):
    """Where the experiment's tokenizer, dictionary and binarized data come from.

    A variant that keeps its pair's tokenizer and dictionary settings reuses the pair's data
    instead of building an identical copy.
    """
    if e["variant"]:
        base = experiment(e["corpus"], e["pair"])
        if all(e[section] == base[section] for section in ("tokenizer", "dict")):
            return f"results/{e['corpus']}/{e['pair']}"
    return f"results/{e['corpus']}/{e['name']}"


def options(settings, flags=True):
    """Command-line options for a settings section: `--key value` (values in YAML syntax).

    flags=True: booleans are argparse switches (`--key` when true, nothing when false);
    flags=False: they are values like any other (`--key false`), as pasero-train reads them.
    """
    args = []
    for key, value in settings.items():
        option = f"--{key.replace('_', '-')}"
        if value is None or (flags and value is False):
            continue
        if flags and value is True:
            args.append(option)
            continue
        if flags and isinstance(value, list):  # a repeatable option: --key a --key b
            args.extend(f"{option} {shlex.quote(str(item))}" for item in value)
            continue
        if not isinstance(value, str):
            value = yaml.safe_dump(value, default_flow_style=True, width=math.inf).strip().removesuffix("\n...")
        args.append(f"{option} {shlex.quote(value)}")
    return " ".join(args)


# Download --------------------------------------------------------------------------------------


def get_download_options(wildcards):
    cfg = corpus_config(wildcards.corpus)
    args = []
    for n, item in enumerate(cfg["download"]):
        try:
            urls = direction_urls(item["url"], item["checksum"], wildcards.src, wildcards.tgt)
        except ConfigError as e:
            raise WorkflowError(f"config/config.yaml, corpora/{wildcards.corpus}/download/{n}: {e}") from None
        args += [f"--url {shlex.quote(url)} --checksum {item['checksum'] or 'none'}" for url in urls]
    for split, pattern in cfg.get("files", {}).items():
        args.append(f"--files {shlex.quote(f'{split}={pattern}')}")
    if cfg["source"] == "synthetic":
        args.append(f"--seed {cfg['seed']}")
        if cfg.get("sizes"):
            args.append("--sizes " + " ".join(f"{k}={v}" for k, v in cfg["sizes"].items()))
    return " ".join(args)


def get_local_files(wildcards):
    """A `local` corpus's own files are inputs, so editing them redoes the text."""
    files = corpus_config(wildcards.corpus).get("files", {})
    src, tgt = wildcards.src, wildcards.tgt
    return [
        expand_langs(pattern, src, tgt).replace("{lang}", lang) for pattern in files.values() for lang in (src, tgt)
    ]


def get_test_set_inputs(wildcards):
    """Every archive of the corpus is fetched by the main download, so a further test set waits for it."""
    pair = f"{wildcards.src}-{wildcards.tgt}"
    return [*get_local_files(wildcards), f"results/{wildcards.corpus}/{pair}/text/train.{wildcards.src}"]


def get_binarize_text(wildcards):
    e = exp(wildcards)
    if e.get("multilingual"):
        return f"results/{e['corpus']}/{text_pair(e, wildcards.langpair)}/text/{wildcards.split}.{wildcards.lang}"
    return f"{text_dir(e)}/{wildcards.split}.{wildcards.lang}"


def get_options(section):
    """A params function: the command-line options of one settings section of the experiment."""
    return lambda wildcards: options(exp(wildcards)[section])


def get_select_options(wildcards):
    select = exp(wildcards)["select"]
    return f"--{select['checkpoints']} {select['average']}"


def get_threads(wildcards):
    return exp(wildcards)["resources"]["threads"]


def get_gpus(wildcards):
    return exp(wildcards)["resources"]["gpus"]


def get_target_lang(wildcards):
    return exp(wildcards)["tgt"]


def get_source(wildcards):
    return corpus_config(wildcards.corpus)["source"]


# Decoding and scoring --------------------------------------------------------------------------


def get_decode_source(wildcards):
    e = exp(wildcards)
    return f"{text_dir(e)}/{wildcards.testset}.{e['src']}"


def get_score_inputs(wildcards):
    """The hypotheses and references of every test set of the experiment, the primary `test` first."""
    e = exp(wildcards)
    prefix = f"results/{e['corpus']}/{e['name']}"
    return {
        "hyps": [f"{prefix}/{name}.hyp" for name in e["test_sets"]],
        "refs": [f"{text_dir(e)}/{name}.{e['tgt']}" for name in e["test_sets"]],
        "info": f"{prefix}/test.decode.json",
    }


# A pair's experiment name has a hyphen (de-en, de-en.big), a multilingual one has none (top20).
PAIR_EXP = r"[A-Za-z0-9_]+-[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?"
MULTILINGUAL_EXP = r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?"


def get_score_meta(wildcards):
    """The experiment's name in scores.json; a grid point's also its seed and its point without the
    seed (the summary averages the seed replicas of a point)."""
    e = exp(wildcards)
    meta = f"--meta corpus={e['corpus']} --meta pair={e['pair']} --meta variant={e['variant']}"
    point = GRID_POINTS.get(e["variant"])
    if point is not None and point.seed is not None:
        meta += f" --meta grid_point={point.point} --meta seed={point.seed}"
    return meta


def get_score_test_sets(wildcards, input):
    """`--test-set NAME HYP REF` for every test set but the primary one (given as -H/-r)."""
    names = exp(wildcards)["test_sets"]
    return " ".join(
        f"--test-set {name} {hyp} {ref}"
        for name, hyp, ref in zip(names[1:], input.hyps[1:], input.refs[1:], strict=True)
    )


# Training --------------------------------------------------------------------------------------


def get_train_inputs(wildcards):
    e = exp(wildcards)
    data = data_dir(e)
    if e.get("multilingual"):
        splits = [("train", pair) for pair in e["directions"]] + [("valid", pair) for pair in e["valid"]]
    else:
        splits = [(split, f"{e['src']}-{e['tgt']}") for split in ("train", "valid")]
    return {
        "data": [
            f"{data}/bin/{split}.{pair}.{lang}.{ext}"
            for split, pair in splits
            for lang in pair.split("-")
            for ext in ("bin", "idx")
        ],
        "dict": f"{data}/dict.txt",
        "tokenizer": f"{data}/tokenizer/spm.model",
    }


def get_train_data(wildcards):
    return f"{data_dir(exp(wildcards))}/bin"


def get_train_tokenizer(wildcards):
    return f"{data_dir(exp(wildcards))}/tokenizer"


def get_train_languages(wildcards):
    e = exp(wildcards)
    return "" if e.get("multilingual") else f"--source-lang {e['src']} --target-lang {e['tgt']}"


def get_train_options(wildcards):
    return options(exp(wildcards)["train"], flags=False)


def get_run_settings(wildcards):
    """Everything that determines the trained weights (not how fast or where they are computed): a
    param of the train rule, so that changing it reruns training."""
    e = exp(wildcards)
    # (which test sets are scored does not change the weights)
    ignored = ("pairs", "multilingual", "settings", "test_sets")  # the experiment's own are in `train`
    corpus = {k: v for k, v in corpus_config(e["corpus"]).items() if k not in ignored}
    return {"corpus": corpus, "tokenizer": e["tokenizer"], "dict": e["dict"], "train": e["train"]}


def get_settings_caption(wildcards):
    """The experiment's main settings, as the report's captions state them."""
    e = exp(wildcards)
    t = train_config.resolved_settings(e["train"])
    return (
        f"{t['arch']}, {e['tokenizer']['vocab_size']}-piece SentencePiece vocabulary, lr {t['lr']} "
        f"(warm-up {t['warmup']}), dropout {t['dropout']}, label smoothing {t['label_smoothing']}, "
        f"{t['batch_size']} tokens x {t['virtual_dp_size']} per update, at most {t['max_steps']} updates, "
        f"best checkpoint by validation {t['best_metric']}"
    )


def get_launcher(wildcards, resources):
    """Data-parallel training on the job's GPUs: one process per GPU (torchrun), else none.

    A function of `resources`, so Snakemake does not count it among the params whose change reruns
    the rule: the number of GPUs changes the speed, not the weights.
    """
    gpus = resources.gpu
    return f"torchrun --standalone --nproc-per-node {gpus} --no-python " if gpus > 1 else ""
