# Train the experiment's SentencePiece BPE tokenizer on the training text of both languages.


rule tokenizer:
    input:
        train_text,
    output:
        model="results/{corpus}/{exp}/tokenizer/spm.model",
        settings="results/{corpus}/{exp}/tokenizer/settings.yaml",
    params:
        options=lambda w: options(exp(w)["tokenizer"]),
        dir=lambda w, output: os.path.dirname(output.model),
    log:
        "results/{corpus}/{exp}/logs/tokenizer.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/tokenizer.tsv"
    threads: 4
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "pasero-build-tokenizer -i {input} -o {params.dir} {params.options} --threads {threads} > {log} 2>&1"
