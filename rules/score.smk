# Score the test hypotheses with sacreBLEU: bleu.txt (score lines with signatures) and
# scores.json (every metric plus the provenance of decode.json and the experiment's name).


rule score:
    input:
        hyp="results/{corpus}/{exp}/test.hyp",
        ref=lambda w: f"{text_dir(exp(w))}/test.{exp(w)['tgt']}",
        info="results/{corpus}/{exp}/decode.json",
    output:
        bleu="results/{corpus}/{exp}/bleu.txt",
        json="results/{corpus}/{exp}/scores.json",
    params:
        options=lambda w: options(exp(w)["score"]),
        meta=lambda w: (
            f"--meta corpus={w.corpus} --meta pair={exp(w)['pair']} --meta variant={exp(w)['variant']}"
        ),
    log:
        "results/{corpus}/{exp}/logs/score.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/score.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "pasero-score -H {input.hyp} -r {input.ref} -o {output.bleu} --json {output.json} --info {input.info}"
        " {params.meta} {params.options} > {log} 2>&1"
