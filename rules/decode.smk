# Translate a test set (the primary `test` or a further one of the corpus's `test_sets`) with the
# selected model (beam search); {testset}.decode.json records the provenance (checkpoint, steps,
# parameters, training and decoding time) for scores.json. The log also reaches Snakemake's console
# (tee): decoding says every 30 s where it is.


rule decode:
    input:
        model=rules.select.output[0],
        source=get_decode_source,
    output:
        hyp="results/{corpus}/{exp}/{testset}.hyp",
        info="results/{corpus}/{exp}/{testset}.decode.json",
    log:
        "results/{corpus}/{exp}/logs/decode.{testset}.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/decode.{testset}.tsv"
    wildcard_constraints:
        exp=PAIR_EXP,
    conda:
        "../workflow/envs/pasero.yaml"
    threads: get_threads
    resources:
        gpu=lambda w: min(get_gpus(w), 1),
    params:
        options=get_options("decode"),
    shell:
        "OMP_NUM_THREADS={threads} pasero-decode {input.model} -i {input.source} -o {output.hyp}"
        " --info-out {output.info} {params.options} > >(tee {log}) 2>&1"


# One direction of a multilingual experiment: the same model, told the target language by -t.
rule decode_direction:
    input:
        model=rules.select.output[0],
        source=get_direction_source,
    output:
        hyp="results/{corpus}/{exp}/{src}-{tgt}/{testset}.hyp",
        info="results/{corpus}/{exp}/{src}-{tgt}/{testset}.decode.json",
    log:
        "results/{corpus}/{exp}/logs/decode.{src}-{tgt}.{testset}.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/decode.{src}-{tgt}.{testset}.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    threads: get_threads
    resources:
        gpu=lambda w: min(get_gpus(w), 1),
    params:
        options=get_options("decode"),
    shell:
        "OMP_NUM_THREADS={threads} pasero-decode {input.model} -s {wildcards.src} -t {wildcards.tgt}"
        " -i {input.source} -o {output.hyp} --info-out {output.info} {params.options} > >(tee {log}) 2>&1"
