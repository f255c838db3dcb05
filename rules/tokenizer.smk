# Train the experiment's SentencePiece BPE tokenizer on the training text of both languages.


rule tokenizer:
    input:
        get_train_text,
    output:
        model="results/{corpus}/{exp}/tokenizer/spm.model",
        settings="results/{corpus}/{exp}/tokenizer/settings.yaml",
    log:
        "results/{corpus}/{exp}/logs/tokenizer.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/tokenizer.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    threads: 4
    params:
        options=get_options("tokenizer"),
        dir=lambda w, output: os.path.dirname(output.model),
    shell:
        "pasero-build-tokenizer -i {input} -o {params.dir} {params.options} --threads {threads} > {log} 2>&1"
