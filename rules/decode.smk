# Translate the test set with the selected model (beam search); decode.json records the
# provenance (checkpoint, steps, parameters, training and decoding time) for scores.json.


rule decode:
    input:
        model="results/{corpus}/{exp}/model.pt",
        source=lambda w: f"{text_dir(exp(w))}/test.{exp(w)['src']}",
    output:
        hyp="results/{corpus}/{exp}/test.hyp",
        info="results/{corpus}/{exp}/decode.json",
    params:
        options=lambda w: options(exp(w)["decode"]),
    log:
        "results/{corpus}/{exp}/logs/decode.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/decode.tsv"
    threads: lambda w: exp(w)["resources"]["threads"]
    resources:
        gpu=lambda w: min(exp(w)["resources"]["gpus"], 1),
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "OMP_NUM_THREADS={threads} pasero-decode {input.model} -i {input.source} -o {output.hyp}"
        " --info-out {output.info} {params.options} > {log} 2>&1"
