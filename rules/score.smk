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
