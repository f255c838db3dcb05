# Multilingual experiments (corpora.X.multilingual.NAME): one model for several directions.
# Resolving such an experiment's settings, where each direction's text comes from, and the inputs
# and options of the per-direction decoding and scoring and of the experiment's table. The rules
# shared with language pairs (tokenizer, dict, binarize, train, select) branch on
# `e.get("multilingual")` in common.smk.


def multilingual_experiment(corpus, name):
    """A multilingual experiment: one model for the directions of `corpus.multilingual.{base}`.

    Its settings are layered like a pair's (the entry's `settings` in place of the pair's); the
    tokenizer gets a code token per language, and training the directions, the validated ones and
    Pasero's convention (the target's code on the source side) unless the settings choose another.
    """
    cfg = corpus_config(corpus)
    base, _, variant = name.partition(".")
    if variant and variant not in config["variants"]:
        raise WorkflowError(
            f"unknown variant '{variant}' in '{name}'; config/config.yaml defines: "
            f"{', '.join(config['variants']) or 'none'} (under variants:)"
        )
    multi = cfg["multilingual"][base]
    where = f"corpora/{corpus}/multilingual/{base}/"
    try:
        langs = multi["langs"]
        directions = multilingual.expand_directions(langs, multi["directions"], multi["pivot"], multi["zero_shot"])
        valid = list(multi.get("valid") or directions)
        for pair in valid:
            multilingual.check_direction(pair, langs)
        zero_shot = multilingual.zero_shot_directions(multi["zero_shot"], langs, directions)
    except ConfigError as e:
        raise WorkflowError(f"config/config.yaml, {where}{e}") from None
    settings = config["defaults"]
    for layer in (cfg.get("settings"), multi.get("settings"), config["variants"].get(variant) if variant else None):
        settings = merge(settings, layer)
    check(settings, f"{where} (resolved settings)/", "settings")
    settings = dict(settings)  # a copy: `defaults` itself when nothing overrides it
    settings["tokenizer"] = {**settings["tokenizer"], "lang_codes": list(langs)}
    settings["train"] = {
        "lang_code": "source",
        **settings["train"],
        "lang_pairs": directions,
        "valid_lang_pairs": valid,
    }
    check_train_settings(settings["train"], f"{where} (resolved settings)/train")
    return dict(
        corpus=corpus,
        name=name,
        pair=base,
        src=None,
        tgt=None,
        variant=variant,
        multilingual=True,
        langs=list(langs),
        pivot=multi["pivot"],
        directions=directions,
        valid=valid,
        zero_shot=zero_shot,
        test_sets=["test", *cfg["test_sets"]],
        **settings,
    )


def multilingual_experiments():
    """(corpus, name) of every multilingual experiment listed in the config."""
    return [(corpus, name) for corpus, name in experiments() if name in corpus_config(corpus).get("multilingual", {})]


def text_pair(e, direction):
    """Where a direction's text comes from: the folder of the first of its two directions listed
    (de-en and en-de share one download and extraction)."""
    src, tgt = direction.split("-")
    listed = e["directions"] + e["zero_shot"]
    before = listed[: listed.index(direction)] if direction in listed else listed
    return f"{tgt}-{src}" if f"{tgt}-{src}" in before else direction


def get_direction_source(wildcards):
    e = exp(wildcards)
    return f"results/{e['corpus']}/{text_pair(e, f'{wildcards.src}-{wildcards.tgt}')}/text/{wildcards.testset}.{wildcards.src}"


def get_direction_score_inputs(wildcards):
    """A multilingual experiment's hypotheses and references of one direction, `test` first."""
    e = exp(wildcards)
    direction = f"{wildcards.src}-{wildcards.tgt}"
    prefix, text = (
        f"results/{e['corpus']}/{e['name']}/{direction}",
        f"results/{e['corpus']}/{text_pair(e, direction)}/text",
    )
    return {
        "hyps": [f"{prefix}/{name}.hyp" for name in e["test_sets"]],
        "refs": [f"{text}/{name}.{wildcards.tgt}" for name in e["test_sets"]],
        "info": f"{prefix}/test.decode.json",
        "samples": get_lang_samples(e),
    }


def get_lang_samples(e):
    """A training text file per language of the experiment: they identify, for the off-target rate,
    a language that the language identifier does not know (the toy's xx)."""
    directions = e["directions"] + e["zero_shot"]
    files = []
    for lang in e["langs"]:
        direction = next(d for d in directions if lang in d.split("-"))
        files.append(f"results/{e['corpus']}/{text_pair(e, direction)}/text/train.{lang}")
    return files


def get_lang_sample_options(wildcards, input):
    return " ".join(f"--lang-sample {path}" for path in input.samples)


def get_direction_score_meta(wildcards):
    e = exp(wildcards)
    direction = f"{wildcards.src}-{wildcards.tgt}"
    zero_shot = str(direction in e["zero_shot"]).lower()
    return (
        f"--meta corpus={e['corpus']} --meta pair={direction} --meta variant={e['variant']}"
        f" --meta multilingual={e['pair']} --meta zero_shot={zero_shot}"
    )


def get_direction_scores(wildcards):
    e = exp(wildcards)
    return [f"results/{e['corpus']}/{e['name']}/{pair}/scores.json" for pair in e["directions"] + e["zero_shot"]]


def get_pivot(wildcards):
    return exp(wildcards)["pivot"]
