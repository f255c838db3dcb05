# Translate a test set (the primary `test` or a further one of the corpus's `test_sets`) with the
# selected model (beam search); {testset}.decode.json records the provenance (checkpoint, steps,
# parameters, training and decoding time) for scores.json.


rule decode:
    input:
        model="results/{corpus}/{exp}/model.pt",
        source=get_decode_source,
    output:
        hyp="results/{corpus}/{exp}/{testset}.hyp",
        info="results/{corpus}/{exp}/{testset}.decode.json",
    params:
        options=lambda w: options(exp(w)["decode"]),
    log:
        "results/{corpus}/{exp}/logs/decode.{testset}.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/decode.{testset}.tsv"
    threads: lambda w: exp(w)["resources"]["threads"]
    resources:
        gpu=lambda w: min(exp(w)["resources"]["gpus"], 1),
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "OMP_NUM_THREADS={threads} pasero-decode {input.model} -i {input.source} -o {output.hyp}"
        " --info-out {output.info} {params.options} > {log} 2>&1"
