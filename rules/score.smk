# Score the hypotheses of every test set with sacreBLEU: bleu.txt (the primary test set's score lines
# with their signatures, and any `extra_bleu` protocol's line) and scores.json (every metric of every
# test set, plus the provenance of test.decode.json and the experiment's name).


rule score:
    input:
        unpack(get_score_inputs),
    output:
        bleu="results/{corpus}/{exp}/bleu.txt",
        json="results/{corpus}/{exp}/scores.json",
    log:
        "results/{corpus}/{exp}/logs/score.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/score.tsv"
    wildcard_constraints:
        exp=PAIR_EXP,
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        options=get_options("score"),
        test_sets=get_score_test_sets,
        lang=get_target_lang,
        meta=get_score_meta,
    shell:
        "pasero-score -H {input.hyps[0]} -r {input.refs[0]} {params.test_sets} --lang {params.lang}"
        " -o {output.bleu} --json {output.json} --info {input.info} {params.meta} {params.options} > {log} 2>&1"


# One direction of a multilingual experiment (scores.json says whether it is zero-shot).
rule score_direction:
    input:
        unpack(get_direction_score_inputs),
    output:
        bleu="results/{corpus}/{exp}/{src}-{tgt}/bleu.txt",
        json="results/{corpus}/{exp}/{src}-{tgt}/scores.json",
    log:
        "results/{corpus}/{exp}/logs/score.{src}-{tgt}.log",
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        options=get_options("score"),
        test_sets=get_score_test_sets,
        meta=get_direction_score_meta,
        samples=get_lang_sample_options,
    shell:
        "pasero-score -H {input.hyps[0]} -r {input.refs[0]} {params.test_sets} --lang {wildcards.tgt} {params.samples}"
        " -o {output.bleu} --json {output.json} --info {input.info} {params.meta} {params.options} > {log} 2>&1"


# A multilingual experiment's table: every direction's scores and their averages.
rule combine_directions:
    input:
        get_direction_scores,
    output:
        bleu="results/{corpus}/{exp}/bleu.txt",
        json="results/{corpus}/{exp}/scores.json",
    log:
        "results/{corpus}/{exp}/logs/combine_directions.log",
    wildcard_constraints:
        exp=MULTILINGUAL_EXP,
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        pivot=get_pivot,
        meta=get_score_meta,
    shell:
        "pasero-combine-directions {input} --pivot {params.pivot} -o {output.bleu} --json {output.json}"
        " {params.meta} > {log} 2>&1"
