# Select the checkpoint(s) that become the experiment's model: the best or last one, or the
# average of the N best or last (a self-contained model.pt that records its steps).


rule select:
    input:
        rules.train.output[0],
    output:
        "results/{corpus}/{exp}/model.pt",
    log:
        "results/{corpus}/{exp}/logs/select.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/select.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        dir=lambda w, input: os.path.dirname(input[0]),
        which=get_select_options,
    shell:
        "pasero-average-checkpoints {params.dir} -o {output} {params.which} > {log} 2>&1"
